"""HF ViT import/export against goldens written by transformers (tests/golden/vit_tiny*): a
ViTForImageClassification ("vit." prefix, classifier.*) and a ViTModel with its pooler."""

import functools
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tfjax.hub import files
from tfjax.hub import vit as vit_hub
from tfjax.models.vit import HEADS, ViT, ViTConfig, ViTModel, attention_weights

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CLASSIFIER_DIR = GOLDEN / "vit_tiny"  # ViTForImageClassification: "vit." prefix, 5 classes
MODEL_DIR = GOLDEN / "vit_tiny_model"  # ViTModel with its pooler: no prefix, pooler.dense.*
WEIGHTS = files.WEIGHTS_FILE
LABELS = ("cat", "dog", "bird", "fish", "frog")
# Measured max |ours - transformers| on CPU, unscanned (scanned): logits 6.0e-7 (4.8e-7),
# last_hidden_state 9.5e-7 / 1.0e-6, hidden_states 2.5e-6 (2.9e-6), attentions 4.8e-7, pooler
# 8.9e-7; float32 reduction order only.
ATOL = 1e-4


@pytest.fixture(scope="module")
def classifier() -> tuple[ViTConfig, dict, str]:
  return vit_hub.load_vit(CLASSIFIER_DIR)


@pytest.fixture(scope="module")
def body() -> tuple[ViTConfig, dict, str]:
  return vit_hub.load_vit(MODEL_DIR)


def golden_copy(tmp_path: Path, source: Path = CLASSIFIER_DIR, edit=None, config_edit=None):
  """A copy of a golden directory with its tensors / config.json passed through edits."""
  out = tmp_path / source.name
  shutil.copytree(source, out)
  if edit is not None:
    save_file(edit(load_file(source / WEIGHTS)), str(out / WEIGHTS), metadata={"format": "pt"})
  if config_edit is not None:
    config = json.loads((source / "config.json").read_text())
    config_edit(config)
    (out / "config.json").write_text(json.dumps(config))
  return out


def assert_same_params(a: dict, b: dict) -> None:
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(np.testing.assert_array_equal, a, b)


# ----------------------------------------------------------------------------------------------
# Parity with transformers on two random images.
# ----------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=(0, 1))
def forward(head: str, config: ViTConfig, params: dict, images: jax.Array):
  """The body's outputs and each layer's attention weights, and the classifier's logits."""
  out, state = ViTModel(config).apply(
    {"params": params.get("vit", params)},
    images,
    return_hidden_states=True,
    mutable=["intermediates"],
  )
  logits = ViT(config).apply({"params": params}, images) if head == "classifier" else None
  return out, attention_weights(state), logits


@pytest.mark.parametrize("scan", [False, True], ids=["unscanned", "scanned"])
@pytest.mark.parametrize("source", [CLASSIFIER_DIR, MODEL_DIR], ids=["classifier", "model"])
def test_outputs_and_attention_weights_match_transformers(source, scan):
  config, _, head = vit_hub.load_vit(source)
  config = config.replace(scan_layers=scan)
  params = vit_hub.vit_params_from_hf(config, files.read_safetensors(source), head)
  golden = np.load(source / "outputs.npz")
  out, attentions, logits = forward(head, config, params, jnp.asarray(golden["pixel_values_nhwc"]))
  np.testing.assert_allclose(out.last_hidden_state, golden["last_hidden_state"], atol=ATOL)
  assert len(out.hidden_states) == config.num_layers + 1
  np.testing.assert_allclose(np.stack(out.hidden_states), golden["hidden_states"], atol=ATOL)
  np.testing.assert_allclose(np.stack(attentions), golden["attentions"], atol=ATOL)
  if head == "classifier":
    np.testing.assert_allclose(logits, golden["logits"], atol=ATOL)
  else:
    np.testing.assert_allclose(out.pooled, golden["pooler_output"], atol=ATOL)


def test_head_and_pooler_are_detected_from_the_tensors(classifier, body):
  config, params, head = classifier
  assert (head, config.num_classes, config.pre_logits) == ("classifier", 5, False)
  assert set(params) == {"vit", "classifier"} and "pre_logits" not in params["vit"]
  config, params, head = body
  assert (head, config.num_classes, config.pre_logits) == ("model", 0, True)
  assert "vit" not in params and "pre_logits" in params


@pytest.mark.parametrize("fixture", ["classifier", "body"])
def test_imported_params_have_the_models_tree_and_float32(fixture, request):
  config, params, head = request.getfixturevalue(fixture)
  images = jnp.zeros((1, config.image_size, config.image_size, config.num_channels))
  init = jax.eval_shape(HEADS[head](config).init, jax.random.key(0), images)["params"]
  assert jax.tree.structure(params) == jax.tree.structure(init)
  for ours, theirs in zip(jax.tree.leaves(params), jax.tree.leaves(init), strict=True):
    assert ours.shape == theirs.shape and ours.dtype == jnp.float32


def test_patch_kernel_cls_token_positions_and_fused_qkv_are_hf_tensors_rearranged(body):
  tensors, params = load_file(MODEL_DIR / WEIGHTS), body[1]
  kernel = tensors["embeddings.patch_embeddings.projection.weight"]  # [d, C, P, P]
  np.testing.assert_array_equal(params["patch_embed"]["kernel"], kernel.transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(params["cls_token"], tensors["embeddings.cls_token"][0, 0])
  positions = tensors["embeddings.position_embeddings"][0]
  np.testing.assert_array_equal(params["position_embed"]["embedding"], positions)
  prefix = "encoder.layer.1.attention.attention."
  parts = [tensors[prefix + n + ".weight"].T for n in ("query", "key", "value")]  # [in, out]
  qkv = params["layer_1"]["self_attention"]["qkv"]["kernel"]
  np.testing.assert_array_equal(qkv, np.concatenate(parts, axis=1))  # [d, q | k | v]


def test_classifier_checkpoint_loads_as_its_body_alone(classifier):
  config, params, head = vit_hub.load_vit(CLASSIFIER_DIR, head="model")
  assert head == "model" and config == classifier[0].replace(num_classes=0)
  assert_same_params(params, classifier[1]["vit"])


@pytest.mark.parametrize(
  ("source", "rename"),
  [
    (CLASSIFIER_DIR, lambda name: name.removeprefix("vit.")),
    (MODEL_DIR, lambda name: "vit." + name),
  ],
  ids=["without", "with"],
)
def test_body_names_with_or_without_the_vit_prefix_import_the_same(tmp_path, source, rename):
  out = golden_copy(tmp_path, source, lambda tensors: {rename(k): v for k, v in tensors.items()})
  expected = vit_hub.load_vit(source)
  config, params, head = vit_hub.load_vit(out)
  assert (config, head) == expected[::2]
  assert_same_params(params, expected[1])


def test_a_pooler_beside_a_classifier_is_dropped_as_transformers_does(tmp_path, classifier):
  pooler = load_file(MODEL_DIR / WEIGHTS)
  out = golden_copy(
    tmp_path, edit=lambda t: {**t, **{k: v for k, v in pooler.items() if "pool" in k}}
  )
  config, params, _ = vit_hub.load_vit(out)
  assert not config.pre_logits
  assert_same_params(params, classifier[1])


# ----------------------------------------------------------------------------------------------
# Checkpoints that do not fit: one ValueError naming the tensors and their shapes.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
  ("config_edit", "expected"),
  [
    (
      lambda c: c.update(image_size=64),
      "HF parameter 'embeddings.position_embeddings' (1, 17, 32) gives (17, 32) after the "
      "'unbatch' transform, but our 'vit/position_embed/embedding' needs (65, 32)",
    ),
    (
      lambda c: c.update(patch_size=4),
      "HF parameter 'embeddings.patch_embeddings.projection.weight' (32, 3, 8, 8) gives "
      "(8, 8, 3, 32) after the 'conv' transform, but our 'vit/patch_embed/kernel' needs "
      "(4, 4, 3, 32)",
    ),
    (
      lambda c: c.update(id2label={"0": "cat", "1": "dog", "2": "bird"}),
      "HF parameter 'classifier.weight' (5, 32) gives (32, 5) after the 'transpose' transform, "
      "but our 'classifier/kernel' needs (32, 3)",
    ),
    (
      lambda c: c.update(num_hidden_layers=3),
      "missing HF parameter 'encoder.layer.2.attention.attention.query.weight' (shape: none) for "
      "our 'vit/layer_2/self_attention/qkv/kernel' (32, 32)",
    ),
  ],
  ids=["image_size", "patch_size", "labels", "layers"],
)
def test_a_config_json_that_does_not_fit_the_weights_names_tensor_and_shapes(
  tmp_path, config_edit, expected
):
  with pytest.raises(ValueError, match="the ViT checkpoint does not fit its config") as error:
    vit_hub.load_vit(golden_copy(tmp_path, config_edit=config_edit))
  assert expected in str(error.value)


def test_a_mis_shaped_qkv_part_names_both_parameters_and_shapes(tmp_path):
  def edit(tensors):
    tensors["encoder.layer.1.attention.attention.key.weight"] = np.zeros((30, 32), np.float32)
    return tensors

  with pytest.raises(ValueError) as error:
    vit_hub.load_vit(golden_copy(tmp_path, MODEL_DIR, edit))
  message = str(error.value)
  assert "'encoder.layer.1.attention.attention.key.weight' (30, 32) gives (32, 30)" in message
  assert "'layer_1/self_attention/qkv/kernel' needs (32, 32) for its k third" in message


def test_a_missing_tensor_names_both_parameters(tmp_path):
  def edit(tensors):
    del tensors["vit.encoder.layer.0.layernorm_after.bias"]
    return tensors

  with pytest.raises(
    ValueError,
    match=r"missing HF parameter 'encoder.layer.0.layernorm_after.bias' \(shape: none\) for our "
    r"'vit/layer_0/mlp_norm/bias' \(32,\)",
  ):
    vit_hub.load_vit(golden_copy(tmp_path, edit=edit))


def test_a_missing_classifier_is_named_when_asked_for():
  with pytest.raises(ValueError, match=r"missing HF parameter 'classifier.weight'"):
    vit_hub.load_vit(MODEL_DIR, head="classifier")


@pytest.mark.parametrize(
  ("name", "ours"),
  [
    ("encoder.layer.2.layernorm_after.bias", "would be our 'layer_2/mlp_norm/bias'"),
    ("embeddings.mask_token", "no tfjax ViT parameter corresponds"),
  ],
)
def test_an_unexpected_tensor_is_named(tmp_path, name, ours):
  def edit(tensors):
    tensors[name] = np.zeros((32,), np.float32)
    return tensors

  with pytest.raises(ValueError, match=rf"unexpected HF parameter '{name}' \(32,\)") as error:
    vit_hub.load_vit(golden_copy(tmp_path, MODEL_DIR, edit))
  assert ours in str(error.value)


def test_an_unknown_head_is_refused():
  with pytest.raises(ValueError, match=r"head='pretraining' is unknown; tfjax imports"):
    vit_hub.load_vit(MODEL_DIR, head="pretraining")


# ----------------------------------------------------------------------------------------------
# Config translation.
# ----------------------------------------------------------------------------------------------


def test_golden_config_translates_field_by_field():
  hf = json.loads((CLASSIFIER_DIR / "config.json").read_text())
  assert vit_hub.vit_config_from_hf(hf) == ViTConfig(
    image_size=32,
    patch_size=8,
    num_channels=3,
    num_classes=5,
    num_layers=2,
    num_heads=4,
    d_model=32,
    d_ff=64,
    activation="gelu",
    dropout_rate=0.0,
    attention_dropout_rate=0.0,
    layer_norm_epsilon=1e-12,
    init_std=0.2,
  )
  assert vit_hub.class_names(hf) == LABELS


def test_config_defaults_are_hf_vit_base():
  config = vit_hub.vit_config_from_hf({"model_type": "vit"})
  assert config == ViTConfig(num_classes=2, init_std=0.02)  # HF's default num_labels is 2
  assert (config.image_size, config.patch_size, config.d_model, config.num_layers) == (
    224,
    16,
    768,
    12,
  )
  assert (config.activation, config.layer_norm_epsilon) == ("gelu", 1e-12)


def test_architectures_decide_the_head_and_pooler_of_a_config_alone():
  model = vit_hub.vit_config_from_hf(json.loads((MODEL_DIR / "config.json").read_text()))
  assert (model.num_classes, model.pre_logits) == (0, True)
  bare = vit_hub.vit_config_from_hf({"model_type": "vit"}, head="model", pre_logits=False)
  assert (bare.num_classes, bare.pre_logits) == (0, False)


@pytest.mark.parametrize(
  ("hf", "field", "value"),
  [
    ({"hidden_act": "gelu"}, "activation", "gelu"),  # exact (erf) GELU, HF ViT's
    ({"hidden_act": "gelu_new"}, "activation", "gelu_tanh"),  # the original JAX checkpoints'
    ({"hidden_act": "gelu_pytorch_tanh"}, "activation", "gelu_tanh"),
    ({"layer_norm_eps": 1e-6}, "layer_norm_epsilon", 1e-6),
    ({"layer_norm_eps": None}, "layer_norm_epsilon", 1e-12),
    ({"hidden_dropout_prob": 0.1}, "dropout_rate", 0.1),
    ({"attention_probs_dropout_prob": 0.25}, "attention_dropout_rate", 0.25),
    ({"initializer_range": 0.1}, "init_std", 0.1),
    ({"num_labels": 7}, "num_classes", 7),
    ({"num_labels": 7, "id2label": {"0": "a", "1": "b"}}, "num_classes", 2),  # id2label wins
    ({"image_size": [384, 384], "patch_size": [32, 32]}, "grid", (12, 12)),
    ({"num_channels": 1}, "num_channels", 1),
  ],
)
def test_config_options_translate(hf, field, value):
  assert getattr(vit_hub.vit_config_from_hf({"model_type": "vit", **hf}), field) == value


@pytest.mark.parametrize(
  ("hf", "match"),
  [
    ({"model_type": "bert"}, r"model_type='bert'; tfjax imports only ViT checkpoints"),
    ({"hidden_act": "silu"}, r"hidden_act='silu', which tfjax does not implement; supported"),
    ({"qkv_bias": False}, r"qkv_bias=False \(query, key and value projections without biases"),
    ({"pooler_act": "relu"}, r"pooler_act='relu'"),
    ({"pooler_output_size": 16}, r"pooler_output_size=16 but hidden_size=768"),
    ({"image_size": [224, 160]}, r"image_size=\[224, 160\], non-square"),
    ({"hidden_size": 30, "num_attention_heads": 4}, "not divisible"),
  ],
)
def test_unsupported_config_raises_naming_the_option(hf, match):
  with pytest.raises(ValueError, match=match) as error:
    vit_hub.vit_config_from_hf({"model_type": "vit", **hf})
  assert "\n" not in str(error.value)


def test_an_hf_classifier_with_a_pooler_is_refused():
  with pytest.raises(ValueError, match="ViTForImageClassification has no pooler"):
    vit_hub.vit_config_from_hf({"model_type": "vit"}, head="classifier", pre_logits=True)


def test_a_bert_directory_is_refused_by_model_type():
  with pytest.raises(ValueError, match="model_type='bert'; tfjax imports only ViT"):
    vit_hub.load_vit(GOLDEN / "bert_tiny_model")


# ----------------------------------------------------------------------------------------------
# Export.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [CLASSIFIER_DIR, MODEL_DIR], ids=["classifier", "model"])
def test_export_reproduces_the_transformers_files(tmp_path, source):
  config, params, head = vit_hub.load_vit(source)
  original_config = json.loads((source / "config.json").read_text())
  names = vit_hub.class_names(original_config) if head == "classifier" else None
  vit_hub.save_vit(tmp_path, config, {"params": params}, head, label_names=names)
  written, original = load_file(tmp_path / WEIGHTS), load_file(source / WEIGHTS)
  assert {k: v.shape for k, v in written.items()} == {k: v.shape for k, v in original.items()}
  for name, array in original.items():
    np.testing.assert_array_equal(written[name], array, err_msg=name)
  hf_config = json.loads((tmp_path / "config.json").read_text())
  assert {k: original_config[k] for k in hf_config} == hf_config  # every key as HF wrote it
  again = vit_hub.load_vit(tmp_path)
  assert again[0] == config and again[2] == head
  assert_same_params(again[1], params)


def test_a_scanned_model_exports_the_same_tensors(classifier):
  config, params, head = classifier
  scanned = config.replace(scan_layers=True)
  stacked = vit_hub.vit_params_from_hf(scanned, files.read_safetensors(CLASSIFIER_DIR), head)
  assert stacked["vit"]["layers"]["mlp"]["hidden"]["kernel"].shape[0] == config.num_layers
  exported = vit_hub.vit_params_to_hf(scanned, stacked, head)
  for name, array in vit_hub.vit_params_to_hf(config, params, head).items():
    np.testing.assert_array_equal(exported[name], array, err_msg=name)


def test_a_tanh_gelu_model_round_trips_its_config(tmp_path, classifier):
  config = classifier[0].replace(activation="gelu_tanh", layer_norm_epsilon=1e-6)
  vit_hub.save_vit(tmp_path, config, classifier[1], "classifier")
  hf_config = json.loads((tmp_path / "config.json").read_text())
  assert (hf_config["hidden_act"], hf_config["layer_norm_eps"]) == ("gelu_new", 1e-6)
  assert vit_hub.class_names(hf_config) == tuple(f"LABEL_{i}" for i in range(5))  # HF's own
  assert vit_hub.load_vit(tmp_path)[0] == config


@pytest.mark.parametrize(
  ("change", "head", "match"),
  [
    ({"pooling": "gap"}, "model", "model.pooling='gap' has no HF equivalent"),
    ({"pre_logits": True}, "classifier", "pre_logits=True has no HF equivalent"),
  ],
)
def test_export_of_a_model_hf_cannot_hold_is_refused(tmp_path, change, head, match):
  config = ViTConfig(image_size=8, patch_size=4, num_layers=1, num_heads=2, d_model=8, d_ff=16)
  with pytest.raises(ValueError, match=match) as error:
    vit_hub.save_vit(tmp_path, config.replace(**change), {}, head)
  assert "\n" not in str(error.value) and not list(tmp_path.iterdir())


def test_label_names_must_name_every_class(tmp_path, classifier):
  config, params, _ = classifier
  with pytest.raises(ValueError, match="2 label_names for a classifier of model.num_classes=5"):
    vit_hub.save_vit(tmp_path, config, params, "classifier", label_names=["cat", "dog"])
