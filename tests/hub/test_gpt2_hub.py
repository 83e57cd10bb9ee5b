"""HF GPT-2 import/export against the golden written by transformers (tests/golden/gpt2_tiny)."""

import functools
import importlib.util
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from safetensors.numpy import load_file, save_file

from tfjax.hub import files, gpt2
from tfjax.models.gpt import GPT, GPTConfig
from tfjax.nn import lora

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "gpt2_tiny"
WEIGHTS = files.WEIGHTS_FILE


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
  return dict(np.load(GOLDEN / "logits.npz"))


@pytest.fixture(scope="module")
def imported() -> tuple[GPTConfig, dict]:
  return gpt2.load_gpt2(GOLDEN)


@functools.partial(jax.jit, static_argnums=0)
def _forward(config: GPTConfig, params: dict, tokens: jax.Array) -> jax.Array:
  return GPT(config).apply({"params": params}, tokens)


def logits_of(config: GPTConfig, params: dict, input_ids: np.ndarray) -> np.ndarray:
  return np.asarray(_forward(config, params, jnp.asarray(input_ids)))


def init_params(config: GPTConfig) -> dict:
  init = jax.jit(lambda key: GPT(config).init(key, jnp.zeros((1, 4), jnp.int32)))
  return init(jax.random.key(1))["params"]


def golden_copy(tmp_path: Path, edit=None, config_edit=None) -> Path:
  """A copy of the golden directory with its tensors / config.json passed through edits."""
  out = tmp_path / "gpt2"
  shutil.copytree(GOLDEN, out)
  if edit is not None:
    tensors = edit(load_file(GOLDEN / WEIGHTS))
    save_file(tensors, str(out / WEIGHTS), metadata={"format": "pt"})
  if config_edit is not None:
    config = json.loads((GOLDEN / "config.json").read_text())
    config_edit(config)
    (out / "config.json").write_text(json.dumps(config))
  return out


# ----------------------------------------------------------------------------------------------
# Parity with transformers.
# ----------------------------------------------------------------------------------------------


def test_imported_gpt2_logits_match_transformers(imported, golden):
  config, params = imported
  logits = logits_of(config, params, golden["input_ids"])
  # Measured 2.2e-6 on CPU (float32 reduction order); transformers' logits reach |3.7|.
  np.testing.assert_allclose(logits, golden["logits"], rtol=0, atol=1e-4)


def test_imported_params_have_the_models_tree_and_float32(imported):
  config, params = imported
  init = init_params(config)
  assert jax.tree.structure(params) == jax.tree.structure(init)
  for ours, theirs in zip(jax.tree.leaves(params), jax.tree.leaves(init), strict=True):
    assert ours.shape == theirs.shape and ours.dtype == jnp.float32


def test_names_without_prefix_and_with_mask_buffers_load_the_same(tmp_path, imported, golden):
  def edit(tensors):
    tensors = {k.removeprefix("transformer."): v for k, v in tensors.items()}
    for i in range(2):  # what older GPT-2 files carry: causal-mask buffers, not parameters
      tensors[f"h.{i}.attn.bias"] = np.tril(np.ones((1, 1, 32, 32), np.float32))
      tensors[f"h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    return tensors

  config, params = gpt2.load_gpt2(golden_copy(tmp_path, edit))
  assert config == imported[0]
  jax.tree.map(np.testing.assert_array_equal, params, imported[1])


def test_half_precision_checkpoint_imports_as_float32(tmp_path, imported):
  out = golden_copy(tmp_path, lambda t: {k: v.astype(np.float16) for k, v in t.items()})
  _, params = gpt2.load_gpt2(out)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-2), params, imported[1])


# ----------------------------------------------------------------------------------------------
# The LM head: tied unless the checkpoint holds a different one (as transformers 5 decides).
# ----------------------------------------------------------------------------------------------


def test_distinct_lm_head_unties_and_is_transposed(tmp_path, golden):
  def edit(tensors):
    tensors["lm_head.weight"] = 2.0 * tensors["transformer.wte.weight"]  # [V, d], nn.Linear
    return tensors

  config, params = gpt2.load_gpt2(golden_copy(tmp_path, edit))
  assert not config.tie_embeddings
  assert params["lm_head"]["kernel"].shape == (32, 64)  # [d, V]
  # The body is unchanged and the head doubled, so the logits double.
  logits = logits_of(config, params, golden["input_ids"])
  np.testing.assert_allclose(logits, 2.0 * golden["logits"], rtol=0, atol=2e-4)


def test_lm_head_equal_to_wte_stays_tied(tmp_path, imported):
  def edit(tensors):
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"].copy()
    return tensors

  config, params = gpt2.load_gpt2(golden_copy(tmp_path, edit))
  assert config.tie_embeddings and "lm_head" not in params


def test_untied_config_without_lm_head_names_the_missing_tensor(tmp_path):
  out = golden_copy(tmp_path, config_edit=lambda c: c.update(tie_word_embeddings=False))
  with pytest.raises(ValueError, match=r"missing HF parameter 'lm_head.weight'.*'lm_head/kernel'"):
    gpt2.load_gpt2(out)


# ----------------------------------------------------------------------------------------------
# Checkpoints that do not fit their config: errors name both parameters and both shapes.
# ----------------------------------------------------------------------------------------------


def test_shape_mismatch_names_both_parameters_and_shapes(tmp_path):
  def edit(tensors):
    tensors["transformer.h.1.mlp.c_fc.weight"] = np.zeros((32, 100), np.float32)
    return tensors

  with pytest.raises(ValueError) as error:
    gpt2.load_gpt2(golden_copy(tmp_path, edit))
  message = str(error.value)
  assert "'h.1.mlp.c_fc.weight' (32, 100)" in message
  assert "'layer_1/mlp/hidden/kernel' needs (32, 128)" in message


def test_missing_tensor_names_both_parameters(tmp_path):
  def edit(tensors):
    del tensors["transformer.h.0.ln_2.bias"]
    return tensors

  with pytest.raises(
    ValueError, match=r"missing HF parameter 'h.0.ln_2.bias'.*'layer_0/mlp_norm/bias' \(32,\)"
  ):
    gpt2.load_gpt2(golden_copy(tmp_path, edit))


@pytest.mark.parametrize(
  ("name", "ours"),
  [
    ("transformer.h.2.ln_1.weight", "would be our 'layer_2/self_attention_norm/scale'"),
    ("multiple_choice_head.summary.weight", "no tfjax GPT parameter corresponds"),
  ],
)
def test_unexpected_tensor_is_named(tmp_path, name, ours):
  def edit(tensors):
    tensors[name] = np.zeros((32,), np.float32)
    return tensors

  short = name.removeprefix("transformer.")
  with pytest.raises(ValueError, match=rf"unexpected HF parameter '{short}' \(32,\)") as error:
    gpt2.load_gpt2(golden_copy(tmp_path, edit))
  assert ours in str(error.value)


def test_config_that_does_not_match_the_weights_fails(tmp_path):
  out = golden_copy(tmp_path, config_edit=lambda c: c.update(n_layer=3))
  with pytest.raises(ValueError, match=r"missing HF parameter 'h.2.attn.c_attn.weight'"):
    gpt2.load_gpt2(out)


# ----------------------------------------------------------------------------------------------
# Config translation.
# ----------------------------------------------------------------------------------------------


def test_golden_config_translates_field_by_field():
  hf = json.loads((GOLDEN / "config.json").read_text())
  assert gpt2.gpt2_config_from_hf(hf) == GPTConfig(
    vocab_size=64,
    max_len=32,
    num_layers=2,
    num_heads=4,
    d_model=32,
    d_ff=128,  # n_inner null -> 4 * n_embd
    activation="gelu_tanh",
    pre_norm=True,
    tie_embeddings=True,
    dropout_rate=0.1,
    attention_dropout_rate=0.1,
    layer_norm_epsilon=1e-5,
    init_std=0.2,
  )


def test_config_defaults_are_gpt2_small():
  config = gpt2.gpt2_config_from_hf({"model_type": "gpt2"})
  assert (config.vocab_size, config.max_len, config.d_model, config.d_ff) == (
    50257,
    1024,
    768,
    3072,
  )
  assert (config.num_layers, config.num_heads, config.activation) == (12, 12, "gelu_tanh")


@pytest.mark.parametrize(
  ("hf", "field", "value"),
  [
    ({"n_inner": 100}, "d_ff", 100),
    ({"activation_function": "gelu"}, "activation", "gelu"),
    ({"activation_function": "gelu_pytorch_tanh"}, "activation", "gelu_tanh"),
    ({"activation_function": "relu"}, "activation", "relu"),
    ({"resid_pdrop": 0.0, "embd_pdrop": 0.0}, "dropout_rate", 0.0),
    ({"attn_pdrop": 0.25}, "attention_dropout_rate", 0.25),
    ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon", 1e-6),
    ({"tie_word_embeddings": False}, "tie_embeddings", False),
    ({"reorder_and_upcast_attn": True}, "dtype", "float32"),  # float32 logits: what we do
  ],
)
def test_config_options_translate(hf, field, value):
  assert getattr(gpt2.gpt2_config_from_hf({"model_type": "gpt2", **hf}), field) == value


@pytest.mark.parametrize(
  ("hf", "match"),
  [
    ({"model_type": "gpt_neo"}, "model_type='gpt_neo'"),
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True"),
    ({"scale_attn_weights": False}, "scale_attn_weights=False"),
    ({"add_cross_attention": True}, "add_cross_attention=True"),
    ({"activation_function": "silu"}, "activation_function='silu'"),
    ({"n_embd": 30, "n_head": 4}, "not divisible"),
  ],
)
def test_unsupported_config_raises_naming_the_option(hf, match):
  with pytest.raises(ValueError, match=match):
    gpt2.gpt2_config_from_hf(hf)


# ----------------------------------------------------------------------------------------------
# Export.
# ----------------------------------------------------------------------------------------------


def test_export_reproduces_the_transformers_files(tmp_path, imported):
  config, params = imported
  gpt2.save_gpt2(tmp_path / "out", config, params)
  written, original = load_file(tmp_path / "out" / WEIGHTS), load_file(GOLDEN / WEIGHTS)
  assert set(written) == set(original)
  for name, array in original.items():
    np.testing.assert_array_equal(written[name], array, err_msg=name)
  again = gpt2.load_gpt2(tmp_path / "out")
  assert again[0] == config
  jax.tree.map(np.testing.assert_array_equal, again[1], params)


def test_untied_model_round_trips_through_export(tmp_path):
  config = GPTConfig(
    vocab_size=40, max_len=16, num_layers=1, num_heads=2, d_model=8, d_ff=24,
    activation="gelu", tie_embeddings=False, dropout_rate=0.0, attention_dropout_rate=0.05,
  )  # fmt: skip
  params = init_params(config)
  gpt2.save_gpt2(tmp_path, config, {"params": params}, eos_token_id=39)
  hf_config = json.loads((tmp_path / "config.json").read_text())
  assert hf_config["eos_token_id"] == hf_config["bos_token_id"] == 39
  assert load_file(tmp_path / WEIGHTS)["lm_head.weight"].shape == (40, 8)
  loaded_config, loaded = gpt2.load_gpt2(tmp_path)
  assert loaded_config == config
  flat, flat_loaded = (traverse_util.flatten_dict(p, sep="/") for p in (params, loaded))
  assert set(flat) == set(flat_loaded)
  for path in flat:
    np.testing.assert_array_equal(flat_loaded[path], flat[path], err_msg=path)


@pytest.mark.parametrize("scan", [False, True], ids=["unrolled", "scanned"])
def test_a_lora_model_exports_with_its_adapters_merged_into_the_weights(tmp_path, imported, scan):
  """HF has no adapter tensors: the exported GPT-2 computes what the adapted model does."""
  config, params = imported
  config = config.replace(scan_layers=scan)
  adapted_config = config.replace(lora=lora.LoRA(rank=2, alpha=4.0, mlp=True))
  tokens = jnp.asarray(np.arange(1, 9)[None] % config.vocab_size, jnp.int32)
  fresh = jax.jit(GPT(adapted_config).init)(jax.random.key(0), tokens)["params"]
  rng = np.random.default_rng(0)
  adapters = jax.tree.map(lambda x: jnp.asarray(rng.normal(0, 0.3, x.shape), x.dtype), fresh)
  base = gpt2.gpt2_params_from_hf(config, files.read_safetensors(GOLDEN))  # the base weights
  adapted = lora.with_adapters(base, adapters)
  gpt2.save_gpt2(tmp_path, adapted_config, adapted)
  assert not any("lora" in name for name in load_file(tmp_path / WEIGHTS))
  loaded_config, loaded = gpt2.load_gpt2(tmp_path)
  assert loaded_config == config.replace(scan_layers=False)  # config.json has no adapters
  want = jax.jit(GPT(adapted_config).apply)({"params": adapted}, tokens)
  np.testing.assert_allclose(logits_of(loaded_config, loaded, tokens), want, atol=1e-4)
  unadapted = logits_of(config, base, tokens)
  assert np.abs(unadapted - np.asarray(want)).max() > 1e-2  # the adapters changed the model
  with pytest.raises(ValueError, match=r"the params hold LoRA adapters, but a GPT with .* has"):
    gpt2.gpt2_params_to_hf(config, adapted)


def test_exported_eos_defaults_to_gpt2s_only_when_the_vocab_has_it():
  config = GPTConfig(vocab_size=8, max_len=4, num_layers=1, num_heads=1, d_model=4, d_ff=8)
  assert gpt2.gpt2_config_to_hf(config)["eos_token_id"] is None
  assert gpt2.gpt2_config_to_hf(config.replace(vocab_size=50257))["eos_token_id"] == 50256


def test_post_ln_gpt_cannot_be_exported():
  config = GPTConfig(vocab_size=8, max_len=4, num_layers=1, num_heads=1, d_model=4, d_ff=8)
  with pytest.raises(ValueError, match="pre-LN"):
    gpt2.gpt2_config_to_hf(config.replace(pre_norm=False))


# ----------------------------------------------------------------------------------------------
# Generation.
# ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(
  importlib.util.find_spec("tfjax.inference.sampling") is None, reason="no tfjax.inference.sampling"
)
def test_greedy_generation_on_imported_model_matches_full_forward_argmax(imported, golden):
  from tfjax.inference.sampling import generate

  config, params = imported
  prompt = golden["input_ids"][0, :5].tolist()
  result = generate(
    config, params, [prompt], max_new_tokens=4, rng=jax.random.key(0), temperature=0.0
  )
  # Independent reference: argmax of a full causal forward without a cache. The window is
  # padded to a fixed 9 tokens (one compile); causal attention ignores the padding after it.
  tokens = np.zeros((1, 9), np.int32)
  tokens[0, :5] = prompt
  for t in range(5, 9):
    tokens[0, t] = logits_of(config, params, tokens)[0, t - 1].argmax()
  assert np.asarray(result.tokens)[0].tolist() == tokens[0].tolist()


def test_a_scanned_config_imports_stacked_layers_and_exports_the_same_tensors(golden, imported):
  config, params = imported
  scanned = config.replace(scan_layers=True)
  tensors = files.read_safetensors(GOLDEN)
  stacked = gpt2.gpt2_params_from_hf(scanned, tensors)
  assert stacked["layers"]["mlp"]["hidden"]["kernel"].shape[0] == config.num_layers
  logits = jax.jit(GPT(scanned).apply)({"params": stacked}, jnp.asarray(golden["input_ids"]))
  np.testing.assert_allclose(logits, golden["logits"], atol=1e-4)
  exported = gpt2.gpt2_params_to_hf(scanned, stacked)
  for name, array in gpt2.gpt2_params_to_hf(config, params).items():
    np.testing.assert_array_equal(exported[name], array)
