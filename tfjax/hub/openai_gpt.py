"""Hugging Face GPT-1 (OpenAI GPT) checkpoints <-> tfjax GPT parameters: the name table and
config.json.

`OpenAIGPTLMHeadModel` and `OpenAIGPTModel` files (names with or without "transformer.") import
into `GPT(config)` with `pre_norm=False` (GPT-1 is post-LN: x = LN(x + sublayer(x)), no final
LayerNorm, no LayerNorm on the embeddings) and export as `OpenAIGPTLMHeadModel`, whose output is
tied to the token embedding. Mind: HF's OpenAI GPT calls its tanh-approximated GELU "gelu"
(`afn`, modeling_openai.ACT_FNS: "gelu" -> gelu_new), where GPT-2 and BERT mean the exact one;
it becomes our `activation="gelu_tanh"`. `tfjax.hub.engine` does the conversion and its checks.
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

HF_PREFIX = "transformer."  # OpenAIGPTLMHeadModel nests the body; OpenAIGPTModel does not
# HF OpenAI GPT's `afn` names -> ours, and back: its "gelu" is the tanh approximation.
AFN_TO_OURS = {"gelu": "gelu_tanh", "relu": "relu"}
OURS_TO_AFN = {ours: afn for afn, ours in AFN_TO_OURS.items()}

# As GPT-2's: Conv1D weights are [in, out] like our kernels, c_attn is [d, q | k | v] like our
# fused qkv. Post-LN: ln_1 follows attention (our self_attention_norm), ln_2 the MLP (mlp_norm).
OPENAI_GPT_PARAM_NAMES: tuple[Row, ...] = (
  Row("tokens_embed.weight", "token_embed/embedding"),
  Row("positions_embed.weight", "position_embed/embedding"),
  Row("h.{i}.attn.c_attn.weight", "layer_{i}/self_attention/qkv/kernel"),
  Row("h.{i}.attn.c_attn.bias", "layer_{i}/self_attention/qkv/bias"),
  Row("h.{i}.attn.c_proj.weight", "layer_{i}/self_attention/out/kernel"),
  Row("h.{i}.attn.c_proj.bias", "layer_{i}/self_attention/out/bias"),
  Row("h.{i}.ln_1.weight", "layer_{i}/self_attention_norm/scale"),
  Row("h.{i}.ln_1.bias", "layer_{i}/self_attention_norm/bias"),
  Row("h.{i}.mlp.c_fc.weight", "layer_{i}/mlp/hidden/kernel"),
  Row("h.{i}.mlp.c_fc.bias", "layer_{i}/mlp/hidden/bias"),
  Row("h.{i}.mlp.c_proj.weight", "layer_{i}/mlp/output/kernel"),
  Row("h.{i}.mlp.c_proj.bias", "layer_{i}/mlp/output/bias"),
  Row("h.{i}.ln_2.weight", "layer_{i}/mlp_norm/scale"),
  Row("h.{i}.ln_2.bias", "layer_{i}/mlp_norm/bias"),
)
OPENAI_GPT = engine.Family(
  name="OpenAI GPT",
  model="GPT",
  rows=OPENAI_GPT_PARAM_NAMES,
  prefix=HF_PREFIX,
  task_prefixes=("lm_head.", "multiple_choice_head.", "score."),
  task_hint="; a task head such as OpenAIGPTDoubleHeadsModel's is not imported yet",
  buffers=("h.{i}.attn.bias", "position_ids"),  # the causal mask and position ids
  # The LM head is the token embedding (tied); a file may store the copy.
  tied_copies=(("lm_head.weight", "tokens_embed.weight"),),
  untied_copy="an untied LM head, which tfjax's GPT-1 import (tied, as HF's) does not read",
)

OPENAI_GPT_CONFIG = ConfigSpec(
  model_type="openai-gpt",
  family="OpenAI GPT (GPT-1)",
  classes="OpenAIGPTLMHeadModel or OpenAIGPTModel",
  model="GPT",
  fields=(  # HF's OpenAIGPTConfig
    ("vocab_size", "vocab_size", 40478),
    ("n_positions", "max_len", 512),
    ("n_layer", "num_layers", 12),
    ("n_head", "num_heads", 12),
    ("n_embd", "d_model", 768),
    ("resid_pdrop", "dropout_rate", 0.1),
    ("attn_pdrop", "attention_dropout_rate", 0.1),
    ("layer_norm_epsilon", "layer_norm_epsilon", 1e-5),
    ("initializer_range", "init_std", 0.02),
  ),
  activation=("afn", "gelu"),
  fixed=(),
  other_defaults={"embd_pdrop": 0.1},
)


def openai_gpt_config_from_hf(hf_config: Mapping[str, Any]) -> GPTConfig:
  """The GPTConfig of an HF OpenAI GPT `config.json` (as a dict); unsupported options raise.
  One dropout rate covers embeddings and residuals in tfjax: `resid_pdrop`."""
  afn = hf_config.get("afn") or "gelu"  # before the shared check, whose names are GPT-2's
  if afn not in AFN_TO_OURS:
    raise ValueError(
      f"config.json has afn={afn!r}, which tfjax's GPT does not implement; supported: "
      f"{sorted(AFN_TO_OURS)} (HF OpenAI GPT's 'gelu' is the tanh approximation)"
    )
  hf = hf_values(OPENAI_GPT_CONFIG, hf_config)
  if hf["embd_pdrop"] != hf["resid_pdrop"]:
    logging.warning(
      "OpenAI GPT import: embd_pdrop=%s differs from resid_pdrop=%s; tfjax uses resid_pdrop "
      "for both (it matters only for training)",
      hf["embd_pdrop"],
      hf["resid_pdrop"],
    )
  fields = {**config_fields(OPENAI_GPT_CONFIG, hf), "activation": AFN_TO_OURS[hf["afn"]]}
  return GPTConfig(
    **fields,
    d_ff=4 * hf["n_embd"],  # GPT-1's MLP is 4 x n_embd; OpenAIGPTConfig has no other size
    pre_norm=False,
    tie_embeddings=True,
    scale_residual_init=False,
  )


def openai_gpt_config_to_hf(config: GPTConfig) -> dict[str, Any]:
  """The HF `config.json` dict of a GPTConfig that OpenAIGPTLMHeadModel can represent."""
  problems = []
  if config.pre_norm:
    problems.append("pre_norm=True (GPT-1 is post-LN; export a pre-LN GPT as GPT-2)")
  if not config.tie_embeddings:
    problems.append("tie_embeddings=False (HF's OpenAI GPT ties its output)")
  if config.d_ff != 4 * config.d_model:
    problems.append(f"d_ff={config.d_ff} (HF's OpenAI GPT has d_ff = 4 x d_model)")
  if config.activation not in OURS_TO_AFN:
    problems.append(f"activation={config.activation!r} (its afn has gelu_tanh and relu)")
  if problems:
    raise ValueError(f"this GPT has no OpenAIGPTLMHeadModel form: {'; '.join(problems)}")
  return {
    **config_json(OPENAI_GPT_CONFIG, config),
    "afn": OURS_TO_AFN[config.activation],  # not config_json's GPT-2 name ("gelu_new")
    "architectures": ["OpenAIGPTLMHeadModel"],
    "embd_pdrop": config.dropout_rate,
    "tie_word_embeddings": True,
  }


def _target(config: GPTConfig) -> engine.Target:
  keys = ("n_layer", "n_embd", "n_head", "vocab_size", "n_positions")
  return engine.Target(
    shapes=engine.abstract_params(GPT(config.replace(decode=False))),
    num_layers=config.num_layers,
    description=f"a post-LN GPT with num_layers={config.num_layers}",
    summary=summary(OPENAI_GPT_CONFIG, config, keys),
    hf_prefix=HF_PREFIX,
  )


def openai_gpt_params_from_hf(config: GPTConfig, tensors: Mapping[str, np.ndarray]) -> Params:
  """Our `params` from HF OpenAI GPT tensors (names with or without "transformer."); every
  missing, unexpected or mis-shaped tensor is reported with both names and shapes."""
  return engine.params_from_hf(OPENAI_GPT, _target(config), tensors)


def openai_gpt_params_to_hf(config: GPTConfig, params: Params) -> dict[str, np.ndarray]:
  """HF OpenAIGPTLMHeadModel tensors (the body under "transformer.") from our `params`."""
  return engine.params_to_hf(OPENAI_GPT, _target(config), params)


def load_openai_gpt(model_dir: str | Path) -> tuple[GPTConfig, Params]:
  """(config, params) of an HF OpenAI GPT checkpoint directory; `GPT(config).apply({"params":
  params}, tokens)` then gives HF's logits."""
  config = openai_gpt_config_from_hf(files.read_config(model_dir))
  return config, openai_gpt_params_from_hf(config, files.read_safetensors(model_dir))


def save_openai_gpt(model_dir: str | Path, config: GPTConfig, params: Params) -> None:
  """Writes `config.json` + `model.safetensors` that transformers' OpenAIGPTLMHeadModel loads."""
  hf = openai_gpt_config_to_hf(config)
  files.write_checkpoint(model_dir, hf, openai_gpt_params_to_hf(config, params))
