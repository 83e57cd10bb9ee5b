"""Tests for tfjax.nn.lora: an adapted projection against numpy, a fresh adapter computing the
base layer exactly, merged models computing the adapted ones (GPT, BERT, ViT; scanned or not),
where the adapters sit and how they shard, and the one-line errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from tfjax.models import bert, gpt, vit
from tfjax.nn import lora
from tfjax.nn.partitioning import params_logical_axes

KEY = jax.random.key(0)
RNG = np.random.default_rng(0)
TOKENS = jnp.asarray(RNG.integers(1, 13, (2, 8)), jnp.int32)
SIZES = dict(num_layers=2, num_heads=2, d_model=8, d_ff=16, dropout_rate=0.0)
SIZES.update(attention_dropout_rate=0.0)
LORA = lora.LoRA(rank=2, alpha=4.0)


def flat(tree) -> dict:
  return traverse_util.flatten_dict(tree, sep="/")


def with_random_adapters(params, seed: int = 1):
  """`params` with every lora_a and lora_b drawn at random (a trained adapter: B != 0)."""
  rng = np.random.default_rng(seed)
  draw = lambda path, x: (
    jnp.asarray(rng.normal(0, 0.5, x.shape), x.dtype) if path.endswith(lora.ADAPTERS) else x
  )
  return traverse_util.unflatten_dict({k: draw(k, v) for k, v in flat(params).items()}, sep="/")


# --- one projection ---------------------------------------------------------------------------


def test_a_fresh_adapter_computes_the_dense_layer_exactly():
  x = jnp.asarray(RNG.normal(size=(3, 5, 6)), jnp.float32)
  base = nn.Dense(4).init(KEY, x)["params"]
  adapted = lora.LoRADense(4, rank=2, alpha=8.0).init(KEY, x)["params"]
  assert set(adapted) == {"kernel", "bias", "lora_a", "lora_b"}
  np.testing.assert_array_equal(adapted["kernel"], base["kernel"])  # initialised alike
  np.testing.assert_array_equal(adapted["lora_b"], np.zeros((2, 4)))  # Hu et al. §4.1
  bound = 1 / np.sqrt(6)  # PEFT's kaiming_uniform(a=sqrt(5)) on A: U(-1/sqrt(in), 1/sqrt(in))
  assert np.abs(adapted["lora_a"]).max() <= bound and np.abs(adapted["lora_a"]).max() > bound / 2
  y = lora.LoRADense(4, rank=2, alpha=8.0).apply({"params": adapted}, x)
  np.testing.assert_array_equal(y, nn.Dense(4).apply({"params": base}, x))


def test_an_adapted_projection_is_x_w_plus_b_plus_alpha_over_r_x_a_b():
  x = RNG.normal(size=(3, 6)).astype(np.float32)
  layer = lora.LoRADense(4, rank=3, alpha=6.0)
  params = with_random_adapters(layer.init(KEY, x)["params"])
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  expected = x @ p["kernel"] + p["bias"] + (6.0 / 3) * (x @ p["lora_a"]) @ p["lora_b"]
  np.testing.assert_allclose(layer.apply({"params": params}, x), expected, rtol=1e-5, atol=1e-6)


def test_a_rank_larger_than_a_projection_is_a_one_line_error():
  model = gpt.GPT(gpt.GPTConfig(vocab_size=13, max_len=8, **SIZES, lora=lora.LoRA(rank=9)))
  message = r"^lora.rank=9 is larger than the 'qkv' projection \(8 -> 24\); choose lora.rank <= 8"
  with pytest.raises(ValueError, match=message):
    model.init(KEY, TOKENS)


@pytest.mark.parametrize(
  "section, message",
  [
    ({"rank": -1}, r"^lora.rank=-1 is negative; use 0 \(no LoRA\) or a rank >= 1, e.g. 8$"),
    ({"rank": 4, "alpha": 0.0}, r"^lora.alpha=0.0 must be > 0 \(the adapters are scaled by"),
    ({"rank": 0, "alpha": -1.0}, r"^lora.alpha=-1.0 must be > 0"),
    ({"rank": 2.5}, r"^lora.rank=2.5 must be a whole number >= 1 \(0: no LoRA\)$"),
    ({"rank": 4, "dropout": 0.1}, r"^unknown lora config keys \['dropout'\]; known keys: \["),
  ],
)
def test_bad_lora_settings_are_one_line_errors(section, message):
  with pytest.raises(ValueError, match=message):
    lora.LoRA.from_config(section)


def test_rank_0_or_no_section_is_no_lora():
  assert lora.LoRA.from_config(None) is None
  assert lora.LoRA.from_config({"rank": 0, "alpha": 16.0, "mlp": False}) is None
  assert lora.LoRA.from_config({"rank": 8, "mlp": True}) == lora.LoRA(8, 16.0, True)


# --- whole models -----------------------------------------------------------------------------

IMAGES = jnp.asarray(RNG.normal(size=(2, 8, 8, 3)), jnp.float32)
MODELS = {  # name -> (model of a config, config, inputs)
  "gpt": (gpt.GPT, gpt.GPTConfig(vocab_size=13, max_len=8, **SIZES), (TOKENS,)),
  "bert": (
    bert.BertForSequenceClassification,
    bert.BertConfig(vocab_size=13, max_len=8, **SIZES),
    (TOKENS.at[0, 5:].set(0),),
  ),
  "vit": (vit.ViT, vit.ViTConfig(image_size=8, patch_size=4, num_classes=3, **SIZES), (IMAGES,)),
}


def _models(name: str, scan: bool, mlp: bool):
  model, config, inputs = MODELS[name]
  config = config.replace(scan_layers=scan)
  adapted = config.replace(lora=lora.LoRA(rank=2, alpha=4.0, mlp=mlp))
  return model(config), model(adapted), inputs


@pytest.mark.parametrize("mlp", [False, True], ids=["attention", "attention_and_mlp"])
@pytest.mark.parametrize("scan", [False, True], ids=["unrolled", "scanned"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_merged_model_computes_the_adapted_one(name, scan, mlp):
  base, adapted, inputs = _models(name, scan, mlp)
  params = with_random_adapters(adapted.init(KEY, *inputs)["params"])
  if "classifier" in params:  # a zero (ViT) or N(0, 0.02) head would hide the differences
    shape = params["classifier"]["kernel"].shape
    params["classifier"]["kernel"] = jnp.asarray(RNG.normal(size=shape), jnp.float32)
  merged = lora.merge(params, adapted.config.lora)
  base_shapes = jax.eval_shape(base.init, KEY, *inputs)["params"]
  assert jax.tree.structure(merged) == jax.tree.structure(base_shapes)  # an ordinary model
  want = adapted.apply({"params": params}, *inputs)
  got = base.apply({"params": merged}, *inputs)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # ... and the adapters mattered: the base weights alone compute something else.
  unadapted = base.apply({"params": lora.base_params(params)}, *inputs)
  assert np.abs(np.asarray(unadapted) - np.asarray(want)).max() > 1e-2


@pytest.mark.parametrize("scan", [False, True], ids=["unrolled", "scanned"])
def test_adapters_sit_beside_their_kernels_so_pretrained_trees_load_unchanged(scan):
  base, adapted, inputs = _models("gpt", scan, mlp=True)
  shapes = jax.eval_shape(adapted.init, KEY, *inputs)["params"]
  base_shapes = jax.eval_shape(base.init, KEY, *inputs)["params"]
  assert jax.tree.structure(lora.base_params(shapes)) == jax.tree.structure(base_shapes)
  adapters = {k for k in flat(shapes) if k.endswith(lora.ADAPTERS)}
  layer = "layers" if scan else "layer_1"
  projections = ["self_attention/qkv", "self_attention/out", "mlp/hidden", "mlp/output"]
  assert {k for k in adapters if k.startswith(layer + "/")} == {
    f"{layer}/{p}/{a}" for p in projections for a in lora.ADAPTERS
  }
  a = flat(shapes)[f"{layer}/self_attention/qkv/lora_a"]
  assert a.shape == ((2, 8, 2) if scan else (8, 2))  # [(layers,) d_model, rank]
  # with_adapters puts fresh adapters beside pre-trained weights: the adapted model's tree.
  rebuilt = lora.with_adapters(lora.base_params(shapes), shapes)
  assert jax.tree.structure(rebuilt) == jax.tree.structure(shapes)


def test_attention_only_adapts_the_four_attention_projections_of_the_decoder_too():
  model, config, inputs = MODELS["gpt"]
  shapes = jax.eval_shape(model(config.replace(lora=LORA)).init, KEY, *inputs)["params"]
  adapted = {k.rsplit("/", 1)[0] for k in flat(shapes) if k.endswith("lora_a")}
  assert adapted == {f"layer_{i}/self_attention/{p}" for i in (0, 1) for p in ("qkv", "out")}


@pytest.mark.parametrize("scan", [False, True], ids=["unrolled", "scanned"])
def test_every_adapter_has_logical_axes_like_its_kernel_with_the_rank_unsharded(scan):
  _, adapted, inputs = _models("gpt", scan, mlp=True)
  shapes = jax.eval_shape(adapted.init, KEY, *inputs)["params"]
  axes = flat(params_logical_axes(shapes, gpt.PARAM_AXES))
  lead = ("layers",) if scan else ()
  layer = "layers" if scan else "layer_0"
  assert axes[f"{layer}/self_attention/qkv/lora_a"] == (*lead, "embed", "lora")
  assert axes[f"{layer}/self_attention/qkv/lora_b"] == (*lead, "lora", "heads")
  assert axes[f"{layer}/self_attention/out/lora_a"] == (*lead, "heads", "lora")
  assert axes[f"{layer}/mlp/output/lora_b"] == (*lead, "lora", "embed")


def test_trainable_marks_the_adapters_and_everything_outside_the_pretrained_body():
  params = {
    "bert": {"layer_0": {"qkv": {"kernel": 1, "bias": 2, "lora_a": 3, "lora_b": 4}}, "pooler": 5},
    "classifier": {"kernel": 6, "bias": 7},
  }
  mask = flat(lora.trainable(params, frozen="bert"))
  assert sorted(k for k, v in mask.items() if v) == [
    "bert/layer_0/qkv/lora_a",
    "bert/layer_0/qkv/lora_b",
    "classifier/bias",
    "classifier/kernel",
  ]
  sizes = jax.tree.map(lambda _: jnp.zeros(3), params)
  assert lora.count(sizes, lambda p: lora.trainable(p, frozen="bert")) == 4 * 3


def test_merging_with_another_rank_than_the_adapters_is_a_clear_error():
  _, adapted, inputs = _models("gpt", False, False)
  params = adapted.init(KEY, *inputs)["params"]
  with pytest.raises(ValueError, match=r"the adapters have rank 2, the config says lora.rank=4"):
    lora.merge(params, lora.LoRA(rank=4))
