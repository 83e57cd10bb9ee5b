"""Hugging Face GPT-2 checkpoints <-> tfjax GPT parameters (config.json + *.safetensors).

Weights are read with `safetensors.numpy` only: tfjax never unpickles anything (DESIGN.md §4).
Parameter names are translated by one table, `GPT2_PARAM_NAMES` (STYLE.md: import is data, not
code paths); loading checks every tensor against the shapes of `GPT(config)`, so a checkpoint
that does not fit its config fails loudly instead of producing a subtly wrong model.
"""

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import traverse_util
from safetensors.numpy import load_file, save_file

from tfjax.models.gpt import GPT, GPTConfig
from tfjax.models.layout import stack_layers, unstack_layers

Params = dict[str, Any]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
GPT2_EOS_ID = 50256  # "<|endoftext|>"
HF_PREFIX = "transformer."  # GPT2LMHeadModel nests the body; GPT2Model and old files do not
_DIR_CONTENTS = (
  f"an HF checkpoint directory holds {CONFIG_FILE} and {WEIGHTS_FILE} (or "
  f"{WEIGHTS_INDEX_FILE} and the shards it lists), as written by transformers' "
  "save_pretrained(..., safe_serialization=True)"
)

# HF name (without "transformer.") -> our parameter path, and how the array changes on the way.
# HF's Conv1D stores [in, out], as our Dense kernels do, and c_attn is [d, q | k | v], the layout
# of our fused `qkv`; only the untied LM head (nn.Linear, [out, in]) is transposed.
GPT2_PARAM_NAMES: tuple[tuple[str, str, str], ...] = (
  ("wte.weight", "token_embed/embedding", "as_is"),
  ("wpe.weight", "position_embed/embedding", "as_is"),
  ("h.{i}.ln_1.weight", "layer_{i}/self_attention_norm/scale", "as_is"),
  ("h.{i}.ln_1.bias", "layer_{i}/self_attention_norm/bias", "as_is"),
  ("h.{i}.attn.c_attn.weight", "layer_{i}/self_attention/qkv/kernel", "as_is"),
  ("h.{i}.attn.c_attn.bias", "layer_{i}/self_attention/qkv/bias", "as_is"),
  ("h.{i}.attn.c_proj.weight", "layer_{i}/self_attention/out/kernel", "as_is"),
  ("h.{i}.attn.c_proj.bias", "layer_{i}/self_attention/out/bias", "as_is"),
  ("h.{i}.ln_2.weight", "layer_{i}/mlp_norm/scale", "as_is"),
  ("h.{i}.ln_2.bias", "layer_{i}/mlp_norm/bias", "as_is"),
  ("h.{i}.mlp.c_fc.weight", "layer_{i}/mlp/hidden/kernel", "as_is"),
  ("h.{i}.mlp.c_fc.bias", "layer_{i}/mlp/hidden/bias", "as_is"),
  ("h.{i}.mlp.c_proj.weight", "layer_{i}/mlp/output/kernel", "as_is"),
  ("h.{i}.mlp.c_proj.bias", "layer_{i}/mlp/output/bias", "as_is"),
  ("ln_f.weight", "final_norm/scale", "as_is"),
  ("ln_f.bias", "final_norm/bias", "as_is"),
  ("lm_head.weight", "lm_head/kernel", "transpose"),
)
# Causal-mask buffers some checkpoints carry: not parameters, ignored on import.
GPT2_BUFFERS: tuple[str, ...] = ("h.{i}.attn.bias", "h.{i}.attn.masked_bias")
# Each transform is its own inverse, so export runs the same table the other way.
TRANSFORMS = {"as_is": lambda x: x, "transpose": lambda x: x.T}

# What HF's GPT2Config assumes for a key config.json leaves out.
_HF_DEFAULTS: dict[str, Any] = {
  "vocab_size": 50257,
  "n_positions": 1024,
  "n_embd": 768,
  "n_layer": 12,
  "n_head": 12,
  "n_inner": None,
  "activation_function": "gelu_new",
  "resid_pdrop": 0.1,
  "embd_pdrop": 0.1,
  "attn_pdrop": 0.1,
  "layer_norm_epsilon": 1e-5,
  "initializer_range": 0.02,
  "tie_word_embeddings": True,
}
_HF_ACTIVATIONS = {
  "gelu_new": "gelu_tanh",
  "gelu_pytorch_tanh": "gelu_tanh",
  "gelu": "gelu",
  "relu": "relu",
}
_OUR_ACTIVATIONS = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}
# Options that change the model's function, the value tfjax implements, and what it means.
# (reorder_and_upcast_attn is accepted: it computes attention logits in float32, as we always do.)
_HF_FIXED_OPTIONS: tuple[tuple[str, Any, str], ...] = (
  ("scale_attn_weights", True, "attention without the 1/sqrt(d_k) scale"),
  ("scale_attn_by_inverse_layer_idx", False, "attention logits scaled by 1/(layer index + 1)"),
  ("add_cross_attention", False, "cross-attention layers (an encoder-decoder GPT-2)"),
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
  model_type = hf_config.get("model_type", "gpt2")
  if model_type != "gpt2":
    raise ValueError(
      f"config.json has model_type={model_type!r}; tfjax imports only GPT-2 checkpoints "
      "(model_type 'gpt2', e.g. GPT2LMHeadModel or GPT2Model)"
    )
  for key, value, meaning in _HF_FIXED_OPTIONS:
    if key in hf_config and hf_config[key] != value:
      raise ValueError(
        f"config.json sets {key}={hf_config[key]!r} ({meaning}), which tfjax's GPT does not "
        f"implement; only {key}={value!r} checkpoints can be imported"
      )
  hf = {**_HF_DEFAULTS, **{k: v for k, v in hf_config.items() if v is not None}}
  activation = hf["activation_function"]
  if activation not in _HF_ACTIVATIONS:
    raise ValueError(
      f"config.json has activation_function={activation!r}, which tfjax does not implement; "
      f"supported: {sorted(_HF_ACTIVATIONS)}"
    )
  if hf["embd_pdrop"] != hf["resid_pdrop"]:
    logging.warning(
      "GPT-2 import: embd_pdrop=%s differs from resid_pdrop=%s; tfjax uses one dropout rate "
      "for both (resid_pdrop). This matters only for training.",
      hf["embd_pdrop"],
      hf["resid_pdrop"],
    )
  return GPTConfig(
    vocab_size=hf["vocab_size"],
    max_len=hf["n_positions"],
    num_layers=hf["n_layer"],
    num_heads=hf["n_head"],
    d_model=hf["n_embd"],
    d_ff=hf["n_inner"] or 4 * hf["n_embd"],
    activation=_HF_ACTIVATIONS[activation],
    pre_norm=True,
    tie_embeddings=bool(hf["tie_word_embeddings"]),
    dropout_rate=hf["resid_pdrop"],
    attention_dropout_rate=hf["attn_pdrop"],
    layer_norm_epsilon=hf["layer_norm_epsilon"],
    init_std=hf["initializer_range"],
  )


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
    "architectures": ["GPT2LMHeadModel"],
    "model_type": "gpt2",
    "vocab_size": config.vocab_size,
    "n_positions": config.max_len,
    "n_embd": config.d_model,
    "n_layer": config.num_layers,
    "n_head": config.num_heads,
    "n_inner": config.d_ff,
    "activation_function": _OUR_ACTIVATIONS[config.activation],
    "resid_pdrop": config.dropout_rate,
    "embd_pdrop": config.dropout_rate,
    "attn_pdrop": config.attention_dropout_rate,
    "layer_norm_epsilon": config.layer_norm_epsilon,
    "initializer_range": config.init_std,
    "tie_word_embeddings": config.tie_embeddings,
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
    "add_cross_attention": False,
    "bos_token_id": eos_token_id,
    "eos_token_id": eos_token_id,
  }


# ----------------------------------------------------------------------------------------------
# Parameters.
# ----------------------------------------------------------------------------------------------


def expected_param_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
  """Our parameter paths ("layer_0/mlp/hidden/kernel") -> shapes, from `jax.eval_shape`."""
  tokens = jax.ShapeDtypeStruct((1, 1), jnp.int32)
  shapes = jax.eval_shape(GPT(config.replace(decode=False)).init, jax.random.key(0), tokens)
  flat = traverse_util.flatten_dict(shapes["params"], sep="/")
  return {path: tuple(leaf.shape) for path, leaf in flat.items()}


def name_pattern(template: str) -> re.Pattern:
  """The regex of an HF name template: "{i}" matches a layer index (group "i")."""
  return re.compile(re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)") + "$")


_NAME_PATTERNS = [(name_pattern(hf), ours, transform) for hf, ours, transform in GPT2_PARAM_NAMES]
_BUFFER_PATTERNS = [name_pattern(name) for name in GPT2_BUFFERS]


def _name_map(
  config: GPTConfig, expected: Mapping[str, tuple[int, ...]]
) -> dict[str, tuple[str, str]]:
  """HF name -> (our path, transform) for every parameter of `GPT(config)` (`expected`)."""
  names = {}
  for hf, ours, transform in GPT2_PARAM_NAMES:
    for i in range(config.num_layers) if "{i}" in hf else [None]:
      path = ours.format(i=i)
      if path in expected:
        names[hf.format(i=i)] = (path, transform)
  unmapped = sorted(set(expected) - {path for path, _ in names.values()})
  if unmapped:  # the table and the model disagree: a tfjax bug, not a checkpoint problem
    raise RuntimeError(f"GPT2_PARAM_NAMES has no entry for tfjax parameters {unmapped}")
  return names


def _strip_prefix(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  out = {}
  for name, array in tensors.items():
    short = name.removeprefix(HF_PREFIX)
    if short in out:
      raise ValueError(f"the checkpoint holds both {short!r} and {HF_PREFIX + short!r}")
    out[short] = array
  return out


def _describe_unexpected(name: str, shape: tuple[int, ...], config: GPTConfig) -> str:
  for pattern, ours, _ in _NAME_PATTERNS:
    match = pattern.match(name)
    if match:
      path = ours.format(**match.groupdict())
      return (
        f"unexpected HF parameter {name!r} {shape}: it would be our {path!r}, which a GPT "
        f"with num_layers={config.num_layers}, tie_embeddings={config.tie_embeddings} "
        "does not have (shape: none)"
      )
  return (
    f"unexpected HF parameter {name!r} {shape}: no tfjax GPT parameter corresponds to it "
    "(our parameter: none; a task head such as GPT2DoubleHeadsModel's is not supported)"
  )


def gpt2_params_from_hf(config: GPTConfig, tensors: Mapping[str, np.ndarray]) -> Params:
  """Our `params` collection from HF GPT-2 tensors (names with or without "transformer.").

  Raises a ValueError listing every missing, unexpected or mis-shaped tensor, each with the
  HF name, our name and both shapes. Arrays are converted to float32 (our parameter dtype).
  """
  if config.scan_layers:  # the name table speaks of layer_{i}: import unscanned, then stack
    params = gpt2_params_from_hf(config.replace(scan_layers=False), tensors)
    return stack_layers(params, config.num_layers)
  tensors = _strip_prefix(tensors)
  expected = expected_param_shapes(config)
  names = _name_map(config, expected)
  problems = []
  for hf, (path, _) in names.items():
    if hf not in tensors:
      problems.append(
        f"missing HF parameter {hf!r} (shape: none) for our {path!r} {expected[path]}"
      )
  for hf, array in tensors.items():
    if hf not in names and not any(p.match(hf) for p in _BUFFER_PATTERNS):
      problems.append(_describe_unexpected(hf, tuple(array.shape), config))
  flat = {}
  for hf, (path, transform) in names.items():
    if hf not in tensors:
      continue
    array = TRANSFORMS[transform](np.asarray(tensors[hf]))
    if tuple(array.shape) != expected[path]:
      note = " after transposing" if transform == "transpose" else ""
      problems.append(
        f"shape mismatch: HF parameter {hf!r} {tuple(tensors[hf].shape)} gives {array.shape}"
        f"{note}, but our {path!r} needs {expected[path]}"
      )
      continue
    flat[path] = jnp.asarray(array, dtype=jnp.float32)
  if problems:
    raise ValueError(
      f"the GPT-2 checkpoint does not fit its config (n_layer={config.num_layers}, "
      f"n_embd={config.d_model}, n_head={config.num_heads}, n_inner={config.d_ff}, "
      f"vocab_size={config.vocab_size}, n_positions={config.max_len}); check that config.json "
      "belongs to these weights:\n  " + "\n  ".join(problems)
    )
  return traverse_util.unflatten_dict(flat, sep="/")


def gpt2_params_to_hf(config: GPTConfig, params: Params) -> dict[str, np.ndarray]:
  """HF GPT2LMHeadModel tensors (with the "transformer." prefix) from our `params`."""
  if set(params) == {"params"}:
    params = params["params"]
  if config.scan_layers:
    return gpt2_params_to_hf(config.replace(scan_layers=False), unstack_layers(params))
  flat = traverse_util.flatten_dict(params, sep="/")
  tensors = {}
  for hf, (path, transform) in _name_map(config, expected_param_shapes(config)).items():
    if path not in flat:
      raise ValueError(f"params has no {path!r} (HF {hf!r}); are they this config's GPT's?")
    name = hf if hf.startswith("lm_head.") else HF_PREFIX + hf
    array = np.asarray(TRANSFORMS[transform](np.asarray(flat[path], dtype=np.float32)))
    tensors[name] = np.ascontiguousarray(array)
  return tensors


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


def require_file(path: Path) -> Path:
  """`path`, or a FileNotFoundError that says what an HF checkpoint directory holds."""
  if not path.is_file():
    hint = ""
    if path.name.endswith(".safetensors") and (path.parent / "pytorch_model.bin").exists():
      hint = (
        "; the directory has pytorch_model.bin, a pickle, which tfjax never loads: convert it "
        "with transformers, from_pretrained(dir) then save_pretrained(dir, "
        "safe_serialization=True)"
      )
    raise FileNotFoundError(f"{path} not found: {_DIR_CONTENTS}{hint}")
  return path


def read_safetensors(model_dir: str | Path) -> dict[str, np.ndarray]:
  """All tensors of `model.safetensors`, or of the shards `model.safetensors.index.json` lists."""
  model_dir = Path(model_dir)
  single = model_dir / WEIGHTS_FILE
  if single.is_file() or not (model_dir / WEIGHTS_INDEX_FILE).is_file():
    return load_file(require_file(single))
  weight_map = json.loads((model_dir / WEIGHTS_INDEX_FILE).read_text())["weight_map"]
  tensors = {}
  for shard in sorted(set(weight_map.values())):
    tensors.update(load_file(require_file(model_dir / shard)))
  missing = sorted(set(weight_map) - set(tensors))
  if missing:
    raise ValueError(f"{WEIGHTS_INDEX_FILE} lists tensors that no shard holds: {missing}")
  return tensors


def load_gpt2(model_dir: str | Path) -> tuple[GPTConfig, Params]:
  """(config, params) of an HF GPT-2 checkpoint directory; `GPT(config).apply({"params":
  params}, tokens)` then gives HF's logits."""
  model_dir = Path(model_dir)
  hf_config = json.loads(require_file(model_dir / CONFIG_FILE).read_text())
  config = gpt2_config_from_hf(hf_config)
  tensors = _strip_prefix(read_safetensors(model_dir))
  config = _untie_if_needed(config, tensors)
  return config, gpt2_params_from_hf(config, tensors)


def save_gpt2(
  model_dir: str | Path, config: GPTConfig, params: Params, *, eos_token_id: int | None = None
) -> None:
  """Writes `config.json` + `model.safetensors` that transformers' GPT2LMHeadModel loads
  (`eos_token_id`: see `gpt2_config_to_hf`)."""
  model_dir = Path(model_dir)
  hf_config = gpt2_config_to_hf(config, eos_token_id)
  tensors = gpt2_params_to_hf(config, params)
  model_dir.mkdir(parents=True, exist_ok=True)
  (model_dir / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
  save_file(tensors, str(model_dir / WEIGHTS_FILE), metadata={"format": "pt"})
