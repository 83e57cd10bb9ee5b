"""HF GPT-1 (OpenAI GPT) import/export against the goldens written by transformers: the LM
(tests/golden/openai_gpt_tiny: post-LN, tanh GELU named "gelu", output tied to the tokens) and
OpenAIGPTDoubleHeadsModel (openai_gpt_double_heads_tiny: the LM plus a score per choice)."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tfjax.hub import files, openai_gpt
from tfjax.models.gpt import GPT
from tfjax.nn.stack import stack_layers

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "openai_gpt_tiny"
DOUBLE_HEADS = GOLDEN.parent / "openai_gpt_double_heads_tiny"


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
  return dict(np.load(GOLDEN / "outputs.npz"))


def golden_copy(tmp_path: Path, edit=None, config_edit=None, source: Path = GOLDEN) -> Path:
  out = tmp_path / "openai_gpt"
  shutil.copytree(source, out)
  if edit is not None:
    tensors = edit(load_file(source / files.WEIGHTS_FILE))
    save_file(tensors, str(out / files.WEIGHTS_FILE), metadata={"format": "pt"})
  if config_edit is not None:
    config = json.loads((source / "config.json").read_text())
    config_edit(config)
    (out / "config.json").write_text(json.dumps(config))
  return out


def test_logits_match_transformers_unscanned_and_scanned(golden):
  config, params, head = openai_gpt.load_openai_gpt(GOLDEN)
  assert head == "lm"
  assert (config.pre_norm, config.activation, config.tie_embeddings) == (False, "gelu_tanh", True)
  assert config.d_ff == 4 * config.d_model and "final_norm" not in params
  logits = GPT(config).apply({"params": params}, golden["input_ids"])
  np.testing.assert_allclose(logits, golden["logits"], atol=1e-4, rtol=0)
  scanned = config.replace(scan_layers=True)
  stacked = stack_layers(params, config.num_layers)
  logits = GPT(scanned).apply({"params": stacked}, golden["input_ids"])
  np.testing.assert_allclose(logits, golden["logits"], atol=1e-4, rtol=0)


def test_export_writes_the_transformers_tensors_and_config(tmp_path):
  config, params, _ = openai_gpt.load_openai_gpt(GOLDEN)
  openai_gpt.save_openai_gpt(tmp_path / "out", config, params)
  written, original = (
    load_file(tmp_path / "out" / files.WEIGHTS_FILE),
    load_file(GOLDEN / files.WEIGHTS_FILE),
  )
  assert sorted(written) == sorted(original)
  for name, array in original.items():
    np.testing.assert_array_equal(written[name], array, err_msg=name)
  hf = json.loads((tmp_path / "out" / "config.json").read_text())
  golden_config = json.loads((GOLDEN / "config.json").read_text())
  for key in ("model_type", "afn", "n_embd", "n_head", "n_layer", "n_positions", "vocab_size"):
    assert hf[key] == golden_config[key], key
  assert hf["architectures"] == ["OpenAIGPTLMHeadModel"]
  again, params_again, head = openai_gpt.load_openai_gpt(tmp_path / "out")
  assert (again, head) == (config, "lm")
  jax.tree.map(np.testing.assert_array_equal, params_again, params)


def test_body_names_without_the_prefix_and_a_stored_tied_head_import_the_same(tmp_path):
  def without_prefix_with_head(tensors):
    out = {k.removeprefix("transformer."): v for k, v in tensors.items()}
    return {**out, "lm_head.weight": out["tokens_embed.weight"]}

  _, expected, _ = openai_gpt.load_openai_gpt(GOLDEN)
  _, params, _ = openai_gpt.load_openai_gpt(golden_copy(tmp_path, without_prefix_with_head))
  jax.tree.map(np.testing.assert_array_equal, params, expected)


@pytest.mark.parametrize(
  "edit, config_edit, message",
  [
    (None, lambda c: c.update(afn="silu"), r"afn='silu', which tfjax's GPT does not implement"),
    (None, lambda c: c.update(model_type="gpt2"), r"tfjax imports only OpenAI GPT \(GPT-1\)"),
    (None, lambda c: c.update(n_layer=3), r"missing HF parameter 'h.2.attn.c_attn.weight'"),
    (
      lambda t: {**t, "lm_head.weight": t["transformer.tokens_embed.weight"] + 1.0},
      None,
      r"'lm_head.weight' differs from 'tokens_embed.weight': an untied LM head",
    ),
    (
      lambda t: {**t, "score.weight": np.zeros((2, 32), np.float32)},
      None,
      r"'score.weight' \(2, 32\): no tfjax GPT parameter .* a task head tfjax does not import",
    ),
  ],
  ids=["silu", "model_type", "layers", "untied_head", "sequence_classification_head"],
)
def test_checkpoints_that_do_not_fit_are_one_readable_error(tmp_path, edit, config_edit, message):
  with pytest.raises(ValueError, match=message):
    openai_gpt.load_openai_gpt(golden_copy(tmp_path, edit, config_edit))


def test_a_gpt_hf_openai_gpt_cannot_hold_is_refused_by_name():
  config, _, _ = openai_gpt.load_openai_gpt(GOLDEN)
  with pytest.raises(ValueError, match=r"pre_norm=True .*; activation='gelu'"):
    openai_gpt.openai_gpt_config_to_hf(config.replace(pre_norm=True, activation="gelu"))


# --- OpenAIGPTDoubleHeadsModel ------------------------------------------------------------------


@pytest.fixture(scope="module")
def double_heads() -> dict[str, np.ndarray]:
  return dict(np.load(DOUBLE_HEADS / "outputs.npz"))


def test_double_heads_scores_and_lm_logits_match_transformers_unscanned_and_scanned(
  double_heads,
):
  config, params, head = openai_gpt.load_openai_gpt(DOUBLE_HEADS)
  assert head == "double_heads" and set(params) == {"gpt", "classifier"}
  assert params["classifier"]["kernel"].shape == (config.d_model, 1)
  inputs = double_heads["input_ids"], double_heads["mc_token_ids"]
  mc_logits, lm_logits = openai_gpt.HEADS[head](config).apply({"params": params}, *inputs)
  np.testing.assert_allclose(mc_logits, double_heads["mc_logits"], atol=1e-4, rtol=0)
  np.testing.assert_allclose(lm_logits, double_heads["logits"], atol=1e-4, rtol=0)
  scanned = config.replace(scan_layers=True)
  tensors = load_file(DOUBLE_HEADS / files.WEIGHTS_FILE)
  stacked = openai_gpt.openai_gpt_params_from_hf(scanned, tensors, head)
  jax.tree.map(np.testing.assert_array_equal, stacked, stack_layers(params, config.num_layers))
  mc_logits, lm_logits = openai_gpt.HEADS[head](scanned).apply({"params": stacked}, *inputs)
  np.testing.assert_allclose(mc_logits, double_heads["mc_logits"], atol=1e-4, rtol=0)
  np.testing.assert_allclose(lm_logits, double_heads["logits"], atol=1e-4, rtol=0)


def test_the_double_heads_lm_is_params_gpt(double_heads):
  config, params, _ = openai_gpt.load_openai_gpt(DOUBLE_HEADS)
  tokens = double_heads["input_ids"].reshape(-1, double_heads["input_ids"].shape[-1])
  logits = GPT(config).apply({"params": params["gpt"]}, tokens)
  np.testing.assert_allclose(logits, double_heads["logits"].reshape(logits.shape), atol=1e-4)


def test_double_heads_export_writes_the_transformers_tensors_and_config(tmp_path):
  config, params, _ = openai_gpt.load_openai_gpt(DOUBLE_HEADS)
  openai_gpt.save_openai_gpt(tmp_path / "out", config, params)  # head from params
  written = load_file(tmp_path / "out" / files.WEIGHTS_FILE)
  original = load_file(DOUBLE_HEADS / files.WEIGHTS_FILE)
  assert sorted(written) == sorted(original) and "lm_head.weight" in written
  for name, array in original.items():
    np.testing.assert_array_equal(written[name], array, err_msg=name)
  hf = json.loads((tmp_path / "out" / "config.json").read_text())
  golden_config = json.loads((DOUBLE_HEADS / "config.json").read_text())
  keys = ("architectures", "model_type", "afn", "n_embd", "n_layer", "vocab_size")
  summary_keys = [k for k in golden_config if k.startswith("summary_")]
  assert len(summary_keys) == 5
  for key in (*keys, *summary_keys):
    assert hf[key] == golden_config[key], key
  again, params_again, head = openai_gpt.load_openai_gpt(tmp_path / "out")
  assert (again, head) == (config, "double_heads")
  jax.tree.map(np.testing.assert_array_equal, params_again, params)
  other = openai_gpt.openai_gpt_config_to_hf(config, "double_heads", classifier_dropout_rate=0.3)
  assert other["summary_first_dropout"] == 0.3


def without(name: str):
  return lambda tensors: {k: v for k, v in tensors.items() if k != name}


@pytest.mark.parametrize(
  "edit, config_edit, head, message",
  [
    (None, None, "lm", r"holds OpenAIGPTDoubleHeadsModel's multiple-choice head \[.*\], which "),
    (
      without("multiple_choice_head.summary.bias"),
      None,
      None,
      r"missing HF parameter 'multiple_choice_head.summary.bias' \(shape: none\) for our "
      r"'classifier/bias' \(1,\)",
    ),
    (None, lambda c: c.update(summary_activation="tanh"), None, r"summary_activation='tanh'; "),
    (None, lambda c: c.update(summary_type="last"), None, r"implements only summary_type='cls_"),
    (None, lambda c: c.update(summary_use_proj=False), None, r"summary_use_proj=False; tfjax"),
    (None, None, "classifier", r"head='classifier' is unknown; tfjax imports \['double_heads'"),
  ],
  ids=["as_lm", "missing_bias", "tanh", "last_token", "no_projection", "unknown_head"],
)
def test_double_heads_that_do_not_fit_are_a_readable_error(
  tmp_path, edit, config_edit, head, message
):
  model_dir = golden_copy(tmp_path, edit, config_edit, source=DOUBLE_HEADS)
  with pytest.raises(ValueError, match=message) as error:
    openai_gpt.load_openai_gpt(model_dir, head=head)
  if edit is None:  # the engine's report of missing tensors lists them one a line
    assert "\n" not in str(error.value)


def test_an_lm_checkpoint_has_no_multiple_choice_head_to_import():
  with pytest.raises(ValueError, match=r"missing HF parameter 'multiple_choice_head.summary"):
    openai_gpt.load_openai_gpt(GOLDEN, head="double_heads")


def test_a_classifier_of_several_outputs_has_no_double_heads_form():
  config, params, _ = openai_gpt.load_openai_gpt(DOUBLE_HEADS)
  wide = {**params, "classifier": {"kernel": np.zeros((32, 2)), "bias": np.zeros(2)}}
  with pytest.raises(ValueError, match="the classifier has 2 outputs; OpenAIGPTDoubleHeadsModel"):
    openai_gpt.openai_gpt_params_to_hf(config, wide, "double_heads")
