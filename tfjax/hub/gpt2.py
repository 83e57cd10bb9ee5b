"""Hugging Face GPT-2 checkpoints <-> tfjax GPT parameters: the name table and config.json.

`GPT2LMHeadModel` and `GPT2Model` files (names with or without "transformer.") import into
`GPT(config)` and export as `GPT2LMHeadModel`; `tfjax.hub.engine` does the conversion and its
checks, `tfjax.hub.files` the directory.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from tfjax.hub import engine, files
from tfjax.hub.engine import Params, Row
from tfjax.hub.hf_config import ConfigSpec, config_fields, config_json, hf_values, summary
from tfjax.models.gpt import GPT, GPTConfig

GPT2_EOS_ID = 50256  # "<|endoftext|>"
HF_PREFIX = "transformer."  # GPT2LMHeadModel nests the body; GPT2Model and old files do not

# HF's Conv1D stores [in, out], as our Dense kernels do, and c_attn is [d, q | k | v], the layout
# of our fused `qkv`; only the untied LM head (nn.Linear, [out, in]) is transposed.
GPT2_PARAM_NAMES: tuple[Row, ...] = (
  Row("wte.weight", "token_embed/embedding"),
  Row("wpe.weight", "position_embed/embedding"),
  Row("h.{i}.ln_1.weight", "layer_{i}/self_attention_norm/scale"),
  Row("h.{i}.ln_1.bias", "layer_{i}/self_attention_norm/bias"),
  Row("h.{i}.attn.c_attn.weight", "layer_{i}/self_attention/qkv/kernel"),
  Row("h.{i}.attn.c_attn.bias", "layer_{i}/self_attention/qkv/bias"),
  Row("h.{i}.attn.c_proj.weight", "layer_{i}/self_attention/out/kernel"),
  Row("h.{i}.attn.c_proj.bias", "layer_{i}/self_attention/out/bias"),
  Row("h.{i}.ln_2.weight", "layer_{i}/mlp_norm/scale"),
  Row("h.{i}.ln_2.bias", "layer_{i}/mlp_norm/bias"),
  Row("h.{i}.mlp.c_fc.weight", "layer_{i}/mlp/hidden/kernel"),
  Row("h.{i}.mlp.c_fc.bias", "layer_{i}/mlp/hidden/bias"),
  Row("h.{i}.mlp.c_proj.weight", "layer_{i}/mlp/output/kernel"),
  Row("h.{i}.mlp.c_proj.bias", "layer_{i}/mlp/output/bias"),
  Row("ln_f.weight", "final_norm/scale"),
  Row("ln_f.bias", "final_norm/bias"),
  Row("lm_head.weight", "lm_head/kernel", "transpose"),
)
# Causal-mask buffers some checkpoints carry: not parameters, ignored on import.
GPT2_BUFFERS: tuple[str, ...] = ("h.{i}.attn.bias", "h.{i}.attn.masked_bias")
GPT2 = engine.Family(
  name="GPT-2",
  model="GPT",
  rows=GPT2_PARAM_NAMES,
  prefix=HF_PREFIX,
  # The LM head and the task heads of GPT2DoubleHeadsModel, ...ForSequenceClassification, ...
  task_prefixes=("lm_head.", "multiple_choice_head.", "score.", "classifier.", "qa_outputs."),
  task_hint="; a task head such as GPT2DoubleHeadsModel's is not supported",
  buffers=GPT2_BUFFERS,
)

GPT2_CONFIG = ConfigSpec(
  model_type="gpt2",
  family="GPT-2",
  classes="GPT2LMHeadModel or GPT2Model",
  model="GPT",
  fields=(  # HF's GPT2Config
    ("vocab_size", "vocab_size", 50257),
    ("n_positions", "max_len", 1024),
    ("n_layer", "num_layers", 12),
    ("n_head", "num_heads", 12),
    ("n_embd", "d_model", 768),
    ("n_inner", "d_ff", None),  # none: 4 * n_embd
    ("resid_pdrop", "dropout_rate", 0.1),
    ("attn_pdrop", "attention_dropout_rate", 0.1),
    ("layer_norm_epsilon", "layer_norm_epsilon", 1e-5),
    ("initializer_range", "init_std", 0.02),
  ),
  activation=("activation_function", "gelu_new"),
  # (reorder_and_upcast_attn is accepted: it computes attention logits in float32, as we do.)
  fixed=(
    ("scale_attn_weights", True, "attention without the 1/sqrt(d_k) scale"),
    ("scale_attn_by_inverse_layer_idx", False, "attention logits scaled by 1/(layer index + 1)"),
    ("add_cross_attention", False, "cross-attention layers (an encoder-decoder GPT-2)"),
  ),
  other_defaults={"embd_pdrop": 0.1, "tie_word_embeddings": True},
)


# ----------------------------------------------------------------------------------------------
# Config.
# ----------------------------------------------------------------------------------------------


def gpt2_config_from_hf(hf_config: Mapping[str, Any]) -> GPTConfig:
  """The GPTConfig of an HF GPT-2 `config.json` (as a dict); unsupported options raise.

  One dropout rate covers embeddings and residual branches in tfjax: it is `resid_pdrop`
  (a different `embd_pdrop` is logged). The import itself may still untie the LM head
  (`load_gpt2`).
  """
  hf = hf_values(GPT2_CONFIG, hf_config)
  if hf["embd_pdrop"] != hf["resid_pdrop"]:
    logging.warning(
      "GPT-2 import: embd_pdrop=%s differs from resid_pdrop=%s; tfjax uses one dropout rate "
      "for both (resid_pdrop). This matters only for training.",
      hf["embd_pdrop"],
      hf["resid_pdrop"],
    )
  fields = config_fields(GPT2_CONFIG, hf)
  fields["d_ff"] = hf["n_inner"] or 4 * hf["n_embd"]  # a null n_inner means 4 * n_embd
  return GPTConfig(**fields, pre_norm=True, tie_embeddings=bool(hf["tie_word_embeddings"]))


def gpt2_config_to_hf(config: GPTConfig, eos_token_id: int | None = None) -> dict[str, Any]:
  """The HF `config.json` dict of a GPTConfig that GPT2LMHeadModel can represent.

  `eos_token_id` (also GPT-2's BOS) defaults to GPT-2's "<|endoftext|>" (50256) when the
  vocabulary has that id, else to none: transformers would otherwise assume 50256.
  """
  if eos_token_id is None and config.vocab_size > GPT2_EOS_ID:
    eos_token_id = GPT2_EOS_ID
  if not config.pre_norm:
    raise ValueError(
      "HF GPT-2 is pre-LN; a post-LN GPT (pre_norm=False, GPT-1) has no GPT-2 checkpoint form"
    )
  return {
    **config_json(GPT2_CONFIG, config),
    "architectures": ["GPT2LMHeadModel"],
    "embd_pdrop": config.dropout_rate,
    "tie_word_embeddings": config.tie_embeddings,
    "reorder_and_upcast_attn": False,
    "bos_token_id": eos_token_id,
    "eos_token_id": eos_token_id,
  }


# ----------------------------------------------------------------------------------------------
# Parameters.
# ----------------------------------------------------------------------------------------------


def _target(config: GPTConfig) -> engine.Target:
  keys = ("n_layer", "n_embd", "n_head", "n_inner", "vocab_size", "n_positions")
  return engine.Target(
    shapes=engine.abstract_params(GPT(config.replace(decode=False))),
    num_layers=config.num_layers,
    description=(
      f"a GPT with num_layers={config.num_layers}, tie_embeddings={config.tie_embeddings}"
    ),
    summary=summary(GPT2_CONFIG, config, keys),
    hf_prefix=HF_PREFIX,
    lora=config.lora,
  )


def gpt2_params_from_hf(config: GPTConfig, tensors: Mapping[str, np.ndarray]) -> Params:
  """Our `params` collection from HF GPT-2 tensors (names with or without "transformer.").

  Raises a ValueError listing every missing, unexpected or mis-shaped tensor, each with the
  HF name, our name and both shapes. Arrays are converted to float32 (our parameter dtype).
  """
  return engine.params_from_hf(GPT2, _target(config), tensors)


def gpt2_params_to_hf(config: GPTConfig, params: Params) -> dict[str, np.ndarray]:
  """HF GPT2LMHeadModel tensors (with the "transformer." prefix) from our `params`."""
  return engine.params_to_hf(GPT2, _target(config), params)


def _untie_if_needed(config: GPTConfig, tensors: dict[str, np.ndarray]) -> GPTConfig:
  """Decides tying from the data, as transformers 5 does: an `lm_head.weight` that differs
  from `wte.weight` is a separate head; one equal to it is dropped when the config ties."""
  head = tensors.get("lm_head.weight")
  if head is None:
    return config  # tied, or untied with the head missing (reported by the shape check)
  wte = tensors.get("wte.weight")
  same = wte is not None and head.shape == wte.shape and np.array_equal(head, wte)
  if same and config.tie_embeddings:
    del tensors["lm_head.weight"]
    return config
  if same:
    return config
  if config.tie_embeddings:
    logging.warning(
      "config.json ties the output to wte, but lm_head.weight differs from wte.weight: "
      "importing a separate (untied) output head, as transformers does"
    )
  return config.replace(tie_embeddings=False)


# ----------------------------------------------------------------------------------------------
# Files.
# ----------------------------------------------------------------------------------------------


def load_gpt2(model_dir: str | Path) -> tuple[GPTConfig, Params]:
  """(config, params) of an HF GPT-2 checkpoint directory; `GPT(config).apply({"params":
  params}, tokens)` then gives HF's logits."""
  config = gpt2_config_from_hf(files.read_config(model_dir))
  tensors = engine.normalize(GPT2, files.read_safetensors(model_dir))
  config = _untie_if_needed(config, tensors)
  return config, gpt2_params_from_hf(config, tensors)


def save_gpt2(
  model_dir: str | Path, config: GPTConfig, params: Params, *, eos_token_id: int | None = None
) -> None:
  """Writes `config.json` + `model.safetensors` that transformers' GPT2LMHeadModel loads
  (`eos_token_id`: see `gpt2_config_to_hf`)."""
  hf = gpt2_config_to_hf(config, eos_token_id)
  files.write_checkpoint(model_dir, hf, gpt2_params_to_hf(config, params))
