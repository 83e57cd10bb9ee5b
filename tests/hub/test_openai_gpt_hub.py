"""HF GPT-1 (OpenAI GPT) import/export against the golden written by transformers
(tests/golden/openai_gpt_tiny): post-LN, tanh GELU named "gelu", output tied to the tokens."""

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


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
  return dict(np.load(GOLDEN / "outputs.npz"))


def golden_copy(tmp_path: Path, edit=None, config_edit=None) -> Path:
  out = tmp_path / "openai_gpt"
  shutil.copytree(GOLDEN, out)
  if edit is not None:
    tensors = edit(load_file(GOLDEN / files.WEIGHTS_FILE))
    save_file(tensors, str(out / files.WEIGHTS_FILE), metadata={"format": "pt"})
  if config_edit is not None:
    config = json.loads((GOLDEN / "config.json").read_text())
    config_edit(config)
    (out / "config.json").write_text(json.dumps(config))
  return out


def test_logits_match_transformers_unscanned_and_scanned(golden):
  config, params = openai_gpt.load_openai_gpt(GOLDEN)
  assert (config.pre_norm, config.activation, config.tie_embeddings) == (False, "gelu_tanh", True)
  assert config.d_ff == 4 * config.d_model and "final_norm" not in params
  logits = GPT(config).apply({"params": params}, golden["input_ids"])
  np.testing.assert_allclose(logits, golden["logits"], atol=1e-4, rtol=0)
  scanned = config.replace(scan_layers=True)
  stacked = stack_layers(params, config.num_layers)
  logits = GPT(scanned).apply({"params": stacked}, golden["input_ids"])
  np.testing.assert_allclose(logits, golden["logits"], atol=1e-4, rtol=0)


def test_export_writes_the_transformers_tensors_and_config(tmp_path):
  config, params = openai_gpt.load_openai_gpt(GOLDEN)
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
  again, params_again = openai_gpt.load_openai_gpt(tmp_path / "out")
  assert again == config
  jax.tree.map(np.testing.assert_array_equal, params_again, params)


def test_body_names_without_the_prefix_and_a_stored_tied_head_import_the_same(tmp_path):
  def without_prefix_with_head(tensors):
    out = {k.removeprefix("transformer."): v for k, v in tensors.items()}
    return {**out, "lm_head.weight": out["tokens_embed.weight"]}

  _, expected = openai_gpt.load_openai_gpt(GOLDEN)
  _, params = openai_gpt.load_openai_gpt(golden_copy(tmp_path, without_prefix_with_head))
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
  ],
  ids=["silu", "model_type", "layers", "untied_head"],
)
def test_checkpoints_that_do_not_fit_are_one_readable_error(tmp_path, edit, config_edit, message):
  with pytest.raises(ValueError, match=message):
    openai_gpt.load_openai_gpt(golden_copy(tmp_path, edit, config_edit))


def test_a_gpt_hf_openai_gpt_cannot_hold_is_refused_by_name():
  config, _ = openai_gpt.load_openai_gpt(GOLDEN)
  with pytest.raises(ValueError, match=r"pre_norm=True .*; activation='gelu'"):
    openai_gpt.openai_gpt_config_to_hf(config.replace(pre_norm=True, activation="gelu"))
