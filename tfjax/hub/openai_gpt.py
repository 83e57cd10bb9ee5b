"""Hugging Face GPT-1 (OpenAI GPT) checkpoints <-> tfjax GPT parameters: the name table and
config.json.

Two heads (`HEADS`): "lm", `OpenAIGPTLMHeadModel` and `OpenAIGPTModel` files (names with or
without "transformer.") <-> `GPT(config)`; and "double_heads", `OpenAIGPTDoubleHeadsModel`
(GPT-1's fine-tuning model, Radford et al. 2018 §3.3: the LM plus one linear score per choice
read at `mc_token_ids`) <-> `GPTForFineTuning(config, 1, combine="choices")`, the body under
"gpt/" and `multiple_choice_head.summary` as "classifier". GPT-1 is post-LN (`pre_norm=False`:
x = LN(x + sublayer(x)), no final LayerNorm, none on the embeddings) and its output is tied to
the token embedding. Mind: HF's OpenAI GPT calls its tanh-approximated GELU "gelu"
(`afn`, modeling_openai.ACT_FNS: "gelu" -> gelu_new), where GPT-2 and BERT mean the exact one;
it becomes our `activation="gelu_tanh"`. `tfjax.hub.engine` does the conversion and its checks.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from tfjax.hub import engine, files
from tfjax.hub.engine import Params, Row
from tfjax.hub.hf_config import ConfigSpec, config_fields, config_json, hf_values, summary
from tfjax.models.gpt import GPT, GPTConfig, GPTForFineTuning

HF_PREFIX = "transformer."  # the head models nest the body; OpenAIGPTModel does not
BODY_PATH = "gpt/"  # ... as GPTForFineTuning does
HEAD_ARCHITECTURES = {"lm": "OpenAIGPTLMHeadModel", "double_heads": "OpenAIGPTDoubleHeadsModel"}
MC_PREFIX = "multiple_choice_head."
CLASSIFIER_DROPOUT = 0.1  # GPT-1 §4.1, and HF's summary_first_dropout default
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
# OpenAIGPTDoubleHeadsModel's multiple-choice head (a SequenceSummary: nn.Linear(n_embd, 1)),
# beside "gpt/".
OPENAI_GPT_HEAD_PARAM_NAMES: tuple[Row, ...] = (
  Row(MC_PREFIX + "summary.weight", "classifier/kernel", "transpose"),
  Row(MC_PREFIX + "summary.bias", "classifier/bias"),
)
OPENAI_GPT = engine.Family(
  name="OpenAI GPT",
  model="GPT",
  rows=OPENAI_GPT_PARAM_NAMES + OPENAI_GPT_HEAD_PARAM_NAMES,
  prefix=HF_PREFIX,
  task_prefixes=("lm_head.", MC_PREFIX, "score."),
  task_hint=(
    "; a task head tfjax does not import (it imports OpenAIGPTLMHeadModel, OpenAIGPTModel and "
    "OpenAIGPTDoubleHeadsModel)"
  ),
  buffers=("h.{i}.attn.bias", "position_ids"),  # the causal mask and position ids
  # The LM head is the token embedding (tied); a file may store the copy.
  tied_copies=(("lm_head.weight", "tokens_embed.weight"),),
  untied_copy="an untied LM head, which tfjax's GPT-1 import (tied, as HF's) does not read",
)

OPENAI_GPT_CONFIG = ConfigSpec(
  model_type="openai-gpt",
  family="OpenAI GPT (GPT-1)",
  classes="OpenAIGPTLMHeadModel, OpenAIGPTDoubleHeadsModel or OpenAIGPTModel",
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
# OpenAIGPTDoubleHeadsModel's SequenceSummary options: (config.json key, the value
# GPTForFineTuning(combine="choices") computes, which is HF's default, what it means there).
SUMMARY_OPTIONS = (
  ("summary_type", "cls_index", "the state at mc_token_ids"),
  ("summary_use_proj", True, "a linear layer on it"),
  ("summary_activation", None, "no activation after it"),
  ("summary_proj_to_labels", True, "to one score per choice"),
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


def check_summary(hf_config: Mapping[str, Any]) -> None:
  """Refuses a multiple-choice head other than GPT-1's (config.json's summary_* keys): a
  linear score of the state at `mc_token_ids`. Its dropout rates matter only for training."""
  for key, value, meaning in SUMMARY_OPTIONS:
    found = hf_config.get(key, value)  # HF reads these by truth value ("" and null: none)
    if (bool(found) if isinstance(value, bool) else found or None) != value:
      raise ValueError(
        f"config.json sets {key}={found!r}; tfjax's double-heads GPT (GPTForFineTuning, "
        f"combine='choices') implements only {key}={value!r} ({meaning})"
      )
  first = hf_config.get("summary_first_dropout", CLASSIFIER_DROPOUT)
  if first != CLASSIFIER_DROPOUT:
    logging.warning(
      "OpenAI GPT import: summary_first_dropout=%s; fine-tune with double_heads_model(config, "
      "classifier_dropout_rate=%s) to keep it (HEADS['double_heads'] uses %s)",
      first,
      first,
      CLASSIFIER_DROPOUT,
    )
  if hf_config.get("summary_last_dropout"):
    logging.warning(
      "OpenAI GPT import: summary_last_dropout=%s (dropout on the scores) is not implemented; "
      "it matters only for training",
      hf_config["summary_last_dropout"],
    )


def openai_gpt_config_to_hf(
  config: GPTConfig, head: str = "lm", classifier_dropout_rate: float = CLASSIFIER_DROPOUT
) -> dict[str, Any]:
  """The HF `config.json` dict of a GPTConfig that OpenAIGPTLMHeadModel (head="lm") or
  OpenAIGPTDoubleHeadsModel ("double_heads", its summary_first_dropout the classifier's
  `classifier_dropout_rate`) can represent."""
  _check_head(head)
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
    raise ValueError(f"this GPT has no {HEAD_ARCHITECTURES[head]} form: {'; '.join(problems)}")
  hf = {
    **config_json(OPENAI_GPT_CONFIG, config),
    "afn": OURS_TO_AFN[config.activation],  # not config_json's GPT-2 name ("gelu_new")
    "architectures": [HEAD_ARCHITECTURES[head]],
    "embd_pdrop": config.dropout_rate,
    "tie_word_embeddings": True,
  }
  if head == "double_heads":
    hf.update({key: value for key, value, _ in SUMMARY_OPTIONS})
    hf["summary_first_dropout"] = classifier_dropout_rate
  return hf


# ----------------------------------------------------------------------------------------------
# Parameters.
# ----------------------------------------------------------------------------------------------


def double_heads_model(
  config: GPTConfig, classifier_dropout_rate: float = CLASSIFIER_DROPOUT
) -> GPTForFineTuning:
  """OpenAIGPTDoubleHeadsModel in tfjax: `apply({"params": p}, input_ids [b, c, t],
  mc_token_ids [b, c], lm=True)` gives (mc_logits [b, c], lm_logits [b, c, t, V])."""
  return GPTForFineTuning(
    config, num_outputs=1, combine="choices", classifier_dropout_rate=classifier_dropout_rate
  )


# head -> config -> the tfjax module its params belong to.
HEADS = {"lm": GPT, "double_heads": double_heads_model}


def _check_head(head: str) -> None:
  if head not in HEADS:
    raise ValueError(
      f"head={head!r} is unknown; tfjax imports {sorted(HEADS)} (OpenAIGPTLMHeadModel or "
      "OpenAIGPTModel, OpenAIGPTDoubleHeadsModel)"
    )


def _abstract_params(module: nn.Module, head: str) -> Params:
  if head == "lm":
    return engine.abstract_params(module)
  tokens = jax.ShapeDtypeStruct((1, 1, 1), jnp.int32)  # [b, choices, t]
  positions = jax.ShapeDtypeStruct((1, 1), jnp.int32)  # [b, choices]
  return jax.eval_shape(module.init, jax.random.key(0), tokens, positions)["params"]


def _target(config: GPTConfig, head: str) -> engine.Target:
  _check_head(head)
  keys = ("n_layer", "n_embd", "n_head", "vocab_size", "n_positions")
  module = HEADS[head](config.replace(decode=False))
  nested = head == "double_heads"
  return engine.Target(
    shapes=_abstract_params(module, head),
    num_layers=config.num_layers,
    description=f"a post-LN {type(module).__name__} with num_layers={config.num_layers}",
    summary=summary(OPENAI_GPT_CONFIG, config, keys),
    body_path=BODY_PATH if nested else "",
    hf_prefix=HF_PREFIX,
    lora=config.lora,
  )


def detect_head(hf_config: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> str:
  """ "double_heads" when config.json names OpenAIGPTDoubleHeadsModel or the tensors hold its
  multiple-choice head, else "lm" (OpenAIGPTLMHeadModel, OpenAIGPTModel)."""
  named = HEAD_ARCHITECTURES["double_heads"] in (hf_config.get("architectures") or [])
  return "double_heads" if named or any(n.startswith(MC_PREFIX) for n in tensors) else "lm"


def openai_gpt_params_from_hf(
  config: GPTConfig, tensors: Mapping[str, np.ndarray], head: str = "lm"
) -> Params:
  """Our `params` of `HEADS[head](config)` from HF OpenAI GPT tensors (names with or without
  "transformer."); every missing, unexpected or mis-shaped tensor is reported with both names
  and shapes. head="lm" refuses a multiple-choice head rather than drop it unseen."""
  _check_head(head)
  tensors = engine.normalize(OPENAI_GPT, tensors)
  held = sorted(n for n in tensors if n.startswith(MC_PREFIX))
  if head == "lm" and held:
    raise ValueError(
      f"the checkpoint holds OpenAIGPTDoubleHeadsModel's multiple-choice head {held}, which "
      "head='lm' would drop; import it with head='double_heads' (its params['gpt'] is the LM)"
    )
  return engine.params_from_hf(OPENAI_GPT, _target(config, head), tensors)


def head_of_params(params: Params) -> str:
  """ "double_heads" for the params of GPTForFineTuning (a "classifier" beside "gpt"), else
  "lm"."""
  params = params["params"] if set(params) == {"params"} else params
  return "double_heads" if "classifier" in params else "lm"


def openai_gpt_params_to_hf(
  config: GPTConfig, params: Params, head: str = "lm"
) -> dict[str, np.ndarray]:
  """HF tensors (the body under "transformer.") of OpenAIGPTLMHeadModel from `GPT` params, or
  of OpenAIGPTDoubleHeadsModel from those of `double_heads_model`."""
  tensors = engine.params_to_hf(OPENAI_GPT, _target(config, head), params)
  if head == "double_heads":
    scores = tensors[MC_PREFIX + "summary.weight"].shape[0]
    if scores != 1:
      raise ValueError(
        f"the classifier has {scores} outputs; OpenAIGPTDoubleHeadsModel scores each choice "
        "with one (GPTForFineTuning(config, 1, combine='choices'))"
      )
    # transformers 5 ties this class the other way round (_tied_weights_keys): its files keep
    # the tied table as lm_head.weight, and so do ours.
    tensors["lm_head.weight"] = tensors.pop(HF_PREFIX + "tokens_embed.weight")
  return tensors


# ----------------------------------------------------------------------------------------------
# Files.
# ----------------------------------------------------------------------------------------------


def load_openai_gpt(
  model_dir: str | Path, head: str | None = None
) -> tuple[GPTConfig, Params, str]:
  """(config, params, head) of an HF OpenAI GPT checkpoint directory; `HEADS[head](config).apply(
  {"params": params}, ...)` then gives HF's outputs. `head` defaults to what the checkpoint is
  (`detect_head`): "double_heads" for OpenAIGPTDoubleHeadsModel, else "lm"."""
  hf_config = files.read_config(model_dir)
  config = openai_gpt_config_from_hf(hf_config)
  tensors = engine.normalize(OPENAI_GPT, files.read_safetensors(model_dir))
  head = detect_head(hf_config, tensors) if head is None else head
  _check_head(head)
  if head == "double_heads":
    check_summary(hf_config)
  return config, openai_gpt_params_from_hf(config, tensors, head), head


def save_openai_gpt(
  model_dir: str | Path,
  config: GPTConfig,
  params: Params,
  head: str | None = None,
  *,
  classifier_dropout_rate: float = CLASSIFIER_DROPOUT,
) -> None:
  """Writes `config.json` + `model.safetensors` that transformers' OpenAIGPTLMHeadModel
  (head="lm") or OpenAIGPTDoubleHeadsModel ("double_heads") loads; `head` defaults to the one
  `params` belong to (`head_of_params`)."""
  head = head_of_params(params) if head is None else head
  hf = openai_gpt_config_to_hf(config, head, classifier_dropout_rate)
  files.write_checkpoint(model_dir, hf, openai_gpt_params_to_hf(config, params, head))
