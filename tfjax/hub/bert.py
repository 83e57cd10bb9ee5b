"""Hugging Face BERT checkpoints <-> tfjax BERT parameters (config.json + *.safetensors).

Reads `BertModel` checkpoints (names with or without the "bert." prefix: sentence-transformers
files have none) and `BertForPreTraining` ones (plus `cls.predictions.*`, `cls.seq_relationship.*`)
and writes both. As for GPT-2 (`tfjax.hub`), one table maps HF names to ours (STYLE.md: import
is data, not code paths), tensors are read with `safetensors.numpy` only, and every tensor is
checked against the shapes of the tfjax model, so a checkpoint that does not fit its config
fails naming the parameter instead of producing a subtly wrong model.
"""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import traverse_util
from safetensors.numpy import save_file

from tfjax.hub.gpt2 import (
  CONFIG_FILE,
  WEIGHTS_FILE,
  Params,
  name_pattern,
  read_safetensors,
  require_file,
)
from tfjax.models.bert import HEADS, BertConfig

VOCAB_FILE = "vocab.txt"
HF_PREFIX = "bert."  # BertForPreTraining (and the other task models) nest the body under it
BODY_PATH = "bert/"  # ... as our heads do
HEAD_ARCHITECTURES = {"model": "BertModel", "pretraining": "BertForPreTraining"}


class ParamName(NamedTuple):
  """One row of the name table."""

  hf: str  # HF name, body names without "bert."; "{i}" stands for the layer index
  ours: str  # our path; body paths are BertModel's ("bert/" is prepended inside the heads)
  transform: str = "as_is"  # "transpose": nn.Linear's weight [out, in] <-> our kernel [in, out]
  part: int | None = None  # q, k, v = 0, 1, 2: the third of our fused qkv's last axis it fills


_QKV = "layer_{i}/self_attention/qkv/"
# The encoder + pooler (BertModel). HF keeps q, k and v as three nn.Linear; our attention has
# one fused projection [d, 3d] laid out q | k | v (as GPT-2's c_attn), so each fills a third.
BERT_PARAM_NAMES: tuple[ParamName, ...] = (
  ParamName("embeddings.word_embeddings.weight", "embeddings/token_embed/embedding"),
  ParamName("embeddings.position_embeddings.weight", "embeddings/position_embed/embedding"),
  ParamName("embeddings.token_type_embeddings.weight", "embeddings/segment_embed/embedding"),
  ParamName("embeddings.LayerNorm.weight", "embeddings/embed_norm/scale"),
  ParamName("embeddings.LayerNorm.bias", "embeddings/embed_norm/bias"),
  ParamName("encoder.layer.{i}.attention.self.query.weight", _QKV + "kernel", "transpose", 0),
  ParamName("encoder.layer.{i}.attention.self.key.weight", _QKV + "kernel", "transpose", 1),
  ParamName("encoder.layer.{i}.attention.self.value.weight", _QKV + "kernel", "transpose", 2),
  ParamName("encoder.layer.{i}.attention.self.query.bias", _QKV + "bias", "as_is", 0),
  ParamName("encoder.layer.{i}.attention.self.key.bias", _QKV + "bias", "as_is", 1),
  ParamName("encoder.layer.{i}.attention.self.value.bias", _QKV + "bias", "as_is", 2),
  ParamName(
    "encoder.layer.{i}.attention.output.dense.weight",
    "layer_{i}/self_attention/out/kernel",
    "transpose",
  ),
  ParamName("encoder.layer.{i}.attention.output.dense.bias", "layer_{i}/self_attention/out/bias"),
  ParamName(
    "encoder.layer.{i}.attention.output.LayerNorm.weight", "layer_{i}/self_attention_norm/scale"
  ),
  ParamName(
    "encoder.layer.{i}.attention.output.LayerNorm.bias", "layer_{i}/self_attention_norm/bias"
  ),
  ParamName(
    "encoder.layer.{i}.intermediate.dense.weight", "layer_{i}/mlp/hidden/kernel", "transpose"
  ),
  ParamName("encoder.layer.{i}.intermediate.dense.bias", "layer_{i}/mlp/hidden/bias"),
  ParamName("encoder.layer.{i}.output.dense.weight", "layer_{i}/mlp/output/kernel", "transpose"),
  ParamName("encoder.layer.{i}.output.dense.bias", "layer_{i}/mlp/output/bias"),
  ParamName("encoder.layer.{i}.output.LayerNorm.weight", "layer_{i}/mlp_norm/scale"),
  ParamName("encoder.layer.{i}.output.LayerNorm.bias", "layer_{i}/mlp_norm/bias"),
  ParamName("pooler.dense.weight", "pooler/kernel", "transpose"),
  ParamName("pooler.dense.bias", "pooler/bias"),
)
# The task layers of each head, beside "bert/". The MLM decoder is tied to the word embeddings
# (`cls.predictions.decoder.weight` is that tensor; see _TIED_COPIES), only its bias is its own.
BERT_HEAD_PARAM_NAMES: dict[str, tuple[ParamName, ...]] = {
  "model": (),
  "pretraining": (
    ParamName("cls.predictions.transform.dense.weight", "mlm_transform/kernel", "transpose"),
    ParamName("cls.predictions.transform.dense.bias", "mlm_transform/bias"),
    ParamName("cls.predictions.transform.LayerNorm.weight", "mlm_norm/scale"),
    ParamName("cls.predictions.transform.LayerNorm.bias", "mlm_norm/bias"),
    ParamName("cls.predictions.bias", "mlm_output_bias"),
    ParamName("cls.seq_relationship.weight", "nsp/kernel", "transpose"),
    ParamName("cls.seq_relationship.bias", "nsp/bias"),
  ),
}
# Names of the task layers HF has and which head (if any) tfjax imports them into.
_HEAD_PREFIXES = ("cls.", "classifier.", "qa_outputs.")
# Buffers some checkpoints carry (position ids 0..max_len-1): not parameters, ignored on import.
BERT_BUFFERS: tuple[str, ...] = ("embeddings.position_ids", "embeddings.token_type_ids")
# Tensors that older files store twice: the copy must equal the tensor tfjax keeps (tied).
_TIED_COPIES = {
  "cls.predictions.decoder.weight": "embeddings.word_embeddings.weight",
  "cls.predictions.decoder.bias": "cls.predictions.bias",
}
TRANSFORMS = {"as_is": lambda x: x, "transpose": lambda x: x.T}  # each its own inverse

# What HF's BertConfig assumes for a key config.json leaves out.
_HF_DEFAULTS: dict[str, Any] = {
  "vocab_size": 30522,
  "hidden_size": 768,
  "num_hidden_layers": 12,
  "num_attention_heads": 12,
  "intermediate_size": 3072,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "attention_probs_dropout_prob": 0.1,
  "max_position_embeddings": 512,
  "type_vocab_size": 2,
  "initializer_range": 0.02,
  "layer_norm_eps": 1e-12,
  "pad_token_id": 0,
}
_HF_ACTIVATIONS = {
  "gelu": "gelu",
  "gelu_new": "gelu_tanh",
  "gelu_pytorch_tanh": "gelu_tanh",
  "relu": "relu",
}
_OUR_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}
# Options that change the model's function, the value tfjax implements, and what it means.
_HF_FIXED_OPTIONS: tuple[tuple[str, Any, str], ...] = (
  ("position_embedding_type", "absolute", "relative position embeddings (Shaw et al. / Huang)"),
  ("is_decoder", False, "a causal decoder BERT"),
  ("add_cross_attention", False, "cross-attention layers (an encoder-decoder BERT)"),
)


# ----------------------------------------------------------------------------------------------
# Config.
# ----------------------------------------------------------------------------------------------


def bert_config_from_hf(hf_config: Mapping[str, Any]) -> BertConfig:
  """The BertConfig of an HF BERT `config.json` (as a dict); unsupported options raise."""
  model_type = hf_config.get("model_type", "bert")
  if model_type != "bert":
    raise ValueError(
      f"config.json has model_type={model_type!r}; tfjax imports only BERT checkpoints "
      "(model_type 'bert', e.g. BertModel, BertForPreTraining or a sentence-transformers BERT)"
    )
  if "model_type" not in hf_config and "hidden_size" not in hf_config:
    raise ValueError(
      f"this config.json has neither model_type nor hidden_size ({sorted(hf_config)[:6]}...): "
      "not a model's config; give the directory of the HF BERT checkpoint itself (with "
      "model.safetensors beside its config.json)"
    )
  for key, value, meaning in _HF_FIXED_OPTIONS:
    if key in hf_config and hf_config[key] != value:
      raise ValueError(
        f"config.json sets {key}={hf_config[key]!r} ({meaning}), which tfjax's BERT does not "
        f"implement; only {key}={value!r} checkpoints can be imported"
      )
  hf = {**_HF_DEFAULTS, **{k: v for k, v in hf_config.items() if v is not None}}
  activation = hf["hidden_act"]
  if activation not in _HF_ACTIVATIONS:
    raise ValueError(
      f"config.json has hidden_act={activation!r}, which tfjax does not implement; "
      f"supported: {sorted(_HF_ACTIVATIONS)}"
    )
  return BertConfig(
    vocab_size=hf["vocab_size"],
    max_len=hf["max_position_embeddings"],
    type_vocab_size=hf["type_vocab_size"],
    num_layers=hf["num_hidden_layers"],
    num_heads=hf["num_attention_heads"],
    d_model=hf["hidden_size"],
    d_ff=hf["intermediate_size"],
    activation=_HF_ACTIVATIONS[activation],
    dropout_rate=hf["hidden_dropout_prob"],
    attention_dropout_rate=hf["attention_probs_dropout_prob"],
    layer_norm_epsilon=hf["layer_norm_eps"],
    init_std=hf["initializer_range"],
    pad_id=hf["pad_token_id"],
  )


def bert_config_to_hf(config: BertConfig, head: str = "pretraining") -> dict[str, Any]:
  """The HF `config.json` dict of a BertConfig, for `BertModel` or `BertForPreTraining`."""
  _check_head(head)
  return {
    "architectures": [HEAD_ARCHITECTURES[head]],
    "model_type": "bert",
    "vocab_size": config.vocab_size,
    "max_position_embeddings": config.max_len,
    "type_vocab_size": config.type_vocab_size,
    "num_hidden_layers": config.num_layers,
    "num_attention_heads": config.num_heads,
    "hidden_size": config.d_model,
    "intermediate_size": config.d_ff,
    "hidden_act": _OUR_ACTIVATIONS[config.activation],
    "hidden_dropout_prob": config.dropout_rate,
    "attention_probs_dropout_prob": config.attention_dropout_rate,
    "layer_norm_eps": config.layer_norm_epsilon,
    "initializer_range": config.init_std,
    "pad_token_id": config.pad_id,
    "position_embedding_type": "absolute",
    "is_decoder": False,
    "add_cross_attention": False,
    "tie_word_embeddings": True,
  }


def check_vocab_matches(config: BertConfig, vocab_size: int) -> None:
  """A tokenizer whose vocabulary is not the checkpoint's would feed it the wrong ids (or ids
  past its embedding table): raise, naming both sizes."""
  if vocab_size != config.vocab_size:
    raise ValueError(
      f"{VOCAB_FILE} has {vocab_size} tokens but the checkpoint's vocab_size is "
      f"{config.vocab_size}; use the {VOCAB_FILE} saved with this checkpoint"
    )


def vocab_txt_size(path: str | Path) -> int:
  """Number of tokens of a WordPiece `vocab.txt`: one token a line, split on "\\n" only, as
  `tokenizers` reads it (a token may hold other characters Python counts as line breaks)."""
  lines = Path(path).read_text(encoding="utf-8").split("\n")
  return len(lines) - (lines[-1] == "")  # the final newline ends the last token


# ----------------------------------------------------------------------------------------------
# Parameters.
# ----------------------------------------------------------------------------------------------


def _check_head(head: str) -> None:
  if head not in HEADS:
    raise ValueError(
      f"head={head!r} is unknown; tfjax imports {sorted(HEADS)} (BertModel, BertForPreTraining)"
    )


def expected_param_shapes(config: BertConfig, head: str) -> dict[str, tuple[int, ...]]:
  """Our parameter paths ("bert/layer_0/mlp/hidden/kernel") -> shapes, from `jax.eval_shape`."""
  _check_head(head)
  tokens = jax.ShapeDtypeStruct((1, 1), jnp.int32)
  shapes = jax.eval_shape(HEADS[head](config).init, jax.random.key(0), tokens)
  flat = traverse_util.flatten_dict(shapes["params"], sep="/")
  return {path: tuple(leaf.shape) for path, leaf in flat.items()}


def _rows(head: str) -> list[ParamName]:
  """The table for one head: HF names without "bert.", our full paths."""
  prefix = "" if head == "model" else BODY_PATH
  body = [row._replace(ours=prefix + row.ours) for row in BERT_PARAM_NAMES]
  return body + list(BERT_HEAD_PARAM_NAMES[head])


def _name_map(config: BertConfig, head: str, expected: Mapping[str, Any]) -> dict[str, ParamName]:
  """HF name -> its row (with the layer index filled in) for every parameter of the model."""
  names = {}
  for row in _rows(head):
    for i in range(config.num_layers) if "{i}" in row.hf else [None]:
      path = row.ours.format(i=i)
      if path in expected:
        names[row.hf.format(i=i)] = row._replace(hf=row.hf.format(i=i), ours=path)
  unmapped = sorted(set(expected) - {row.ours for row in names.values()})
  if unmapped:  # the table and the model disagree: a tfjax bug, not a checkpoint problem
    raise RuntimeError(f"BERT_PARAM_NAMES has no entry for tfjax parameters {unmapped}")
  return names


def _part_shape(shape: tuple[int, ...], part: int | None) -> tuple[int, ...]:
  return shape if part is None else (*shape[:-1], shape[-1] // 3)


_ALL_ROWS = BERT_PARAM_NAMES + tuple(r for rows in BERT_HEAD_PARAM_NAMES.values() for r in rows)
_ALL_PATTERNS = [(name_pattern(row.hf), row) for row in _ALL_ROWS]
_BUFFER_PATTERNS = [name_pattern(name) for name in BERT_BUFFERS]


def _describe_unexpected(name: str, shape: tuple[int, ...], config: BertConfig, head: str) -> str:
  for pattern, row in _ALL_PATTERNS:
    match = pattern.match(name)
    if match:
      in_body = row in BERT_PARAM_NAMES and head != "model"
      path = (BODY_PATH if in_body else "") + row.ours.format(**match.groupdict())
      return (
        f"unexpected HF parameter {name!r} {shape}: it would be our {path!r}, which "
        f"{HEAD_ARCHITECTURES[head]} with num_layers={config.num_layers} does not have "
        "(shape: none)"
      )
  hint = ""
  if name.startswith(_HEAD_PREFIXES):
    hint = "; a task head tfjax does not import: load the encoder alone with head='model'"
  return (
    f"unexpected HF parameter {name!r} {shape}: no tfjax BERT parameter corresponds to it "
    f"(our parameter: none){hint}"
  )


def normalize_names(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """HF tensors under the names the table uses: body names without "bert.", the LayerNorm
  "gamma"/"beta" of TF-converted files as "weight"/"bias", tied copies and buffers resolved."""
  out = {}
  for name, array in tensors.items():
    short = name.removeprefix(HF_PREFIX)
    if short.endswith("LayerNorm.gamma") or short.endswith("LayerNorm.beta"):
      short = short.removesuffix(".gamma").removesuffix(".beta")
      short += ".weight" if name.endswith(".gamma") else ".bias"
    if short in out:
      raise ValueError(f"the checkpoint holds {name!r} and another tensor that is also {short!r}")
    out[short] = array
  for copy, kept in _TIED_COPIES.items():
    if copy not in out:
      continue
    if kept not in out:
      out[kept] = out.pop(copy)
    elif np.array_equal(out[copy], out[kept]):
      del out[copy]
    else:
      raise ValueError(
        f"the checkpoint's {copy!r} differs from {kept!r}: an untied MLM decoder, which "
        "tfjax's BertForPreTraining (decoder tied to the token embedding) does not implement"
      )
  for name in [n for n in out if any(p.match(n) for p in _BUFFER_PATTERNS)]:
    del out[name]
  return out


def detect_head(tensors: Mapping[str, np.ndarray]) -> str:
  """ "pretraining" when the (normalized) tensors hold the MLM and NSP heads, "model" when they
  hold no task head; other heads raise, naming them."""
  found = sorted({".".join(n.split(".")[:2]) for n in tensors if n.startswith(_HEAD_PREFIXES)})
  if not found:
    return "model"
  if found == ["cls.predictions", "cls.seq_relationship"]:
    return "pretraining"
  raise ValueError(
    f"the checkpoint holds the task layers {found}, a head tfjax does not import (it imports "
    "BertModel, and BertForPreTraining: cls.predictions + cls.seq_relationship); load the "
    "encoder alone with load_bert(model_dir, head='model')"
  )


def bert_params_from_hf(
  config: BertConfig, tensors: Mapping[str, np.ndarray], head: str = "model"
) -> Params:
  """Our `params` collection of `HEADS[head](config)` from HF BERT tensors (with or without
  "bert."). With head="model" the task layers a checkpoint may hold (cls.*, classifier.*, ...)
  are dropped.

  Raises a ValueError listing every missing, unexpected or mis-shaped tensor, each with the
  HF name (without "bert."), our name and both shapes. Arrays become float32.
  """
  tensors = normalize_names(tensors)
  if head == "model":
    dropped = sorted(n for n in tensors if n.startswith(_HEAD_PREFIXES))
    if dropped:
      logging.info("BERT import as BertModel: dropping the task layers %s", dropped)
    tensors = {n: a for n, a in tensors.items() if n not in dropped}
  expected = expected_param_shapes(config, head)
  names = _name_map(config, head, expected)
  problems = []
  for hf, row in names.items():
    if hf not in tensors:
      shape = _part_shape(expected[row.ours], row.part)
      problems.append(f"missing HF parameter {hf!r} (shape: none) for our {row.ours!r} {shape}")
  for hf, array in tensors.items():
    if hf not in names:
      problems.append(_describe_unexpected(hf, tuple(array.shape), config, head))
  parts: dict[str, dict[int | None, np.ndarray]] = {}
  for hf, row in names.items():
    if hf not in tensors:
      continue
    array = TRANSFORMS[row.transform](np.asarray(tensors[hf], dtype=np.float32))
    needed = _part_shape(expected[row.ours], row.part)
    if tuple(array.shape) != needed:
      note = " after transposing" if row.transform == "transpose" else ""
      third = "" if row.part is None else f" for its {'qkv'[row.part]} third"
      problems.append(
        f"shape mismatch: HF parameter {hf!r} {tuple(tensors[hf].shape)} gives {array.shape}"
        f"{note}, but our {row.ours!r} needs {needed}{third}"
      )
      continue
    parts.setdefault(row.ours, {})[row.part] = array
  if problems:
    raise ValueError(
      f"the BERT checkpoint does not fit its config (num_hidden_layers={config.num_layers}, "
      f"hidden_size={config.d_model}, num_attention_heads={config.num_heads}, "
      f"intermediate_size={config.d_ff}, vocab_size={config.vocab_size}, "
      f"max_position_embeddings={config.max_len}, type_vocab_size={config.type_vocab_size}) "
      f"as {HEAD_ARCHITECTURES[head]}; check that config.json belongs to these weights:\n  "
      + "\n  ".join(problems)
    )
  flat = {}
  for path, pieces in parts.items():  # q | k | v thirds concatenate into the fused projection
    whole = pieces[None] if None in pieces else np.concatenate([pieces[p] for p in range(3)], -1)
    flat[path] = jnp.asarray(whole)
  return traverse_util.unflatten_dict(flat, sep="/")


def bert_params_to_hf(config: BertConfig, params: Params, head: str) -> dict[str, np.ndarray]:
  """HF tensors of `BertModel` (head="model": no prefix) or `BertForPreTraining` ("bert."
  prefix on the body) from our `params` of `HEADS[head](config)`."""
  if set(params) == {"params"}:
    params = params["params"]
  flat = traverse_util.flatten_dict(params, sep="/")
  tensors = {}
  for hf, row in _name_map(config, head, expected_param_shapes(config, head)).items():
    if row.ours not in flat:
      raise ValueError(
        f"params has no {row.ours!r} (HF {hf!r}); are they {HEAD_ARCHITECTURES[head]}'s of "
        "this config?"
      )
    array = np.asarray(flat[row.ours], dtype=np.float32)
    if row.part is not None:
      array = np.split(array, 3, axis=-1)[row.part]
    name = hf if head == "model" or hf.startswith(_HEAD_PREFIXES) else HF_PREFIX + hf
    tensors[name] = np.ascontiguousarray(TRANSFORMS[row.transform](array))
  return tensors


# ----------------------------------------------------------------------------------------------
# Files.
# ----------------------------------------------------------------------------------------------


def load_bert(model_dir: str | Path, head: str | None = None) -> tuple[BertConfig, Params, str]:
  """(config, params, head) of an HF BERT checkpoint directory; `HEADS[head](config).apply(
  {"params": params}, tokens, segment_ids, attention_mask)` then gives HF's outputs.

  `head` defaults to what the checkpoint holds ("pretraining" with the MLM and NSP heads, else
  "model"); head="model" takes the encoder alone from any BERT checkpoint. A `vocab.txt` in the
  directory must have `vocab_size` tokens.
  """
  model_dir = Path(model_dir)
  hf_config = json.loads(require_file(model_dir / CONFIG_FILE).read_text())
  tensors = normalize_names(read_safetensors(model_dir))
  config = bert_config_from_hf(hf_config)
  if (model_dir / VOCAB_FILE).is_file():
    check_vocab_matches(config, vocab_txt_size(model_dir / VOCAB_FILE))
  head = detect_head(tensors) if head is None else head
  _check_head(head)
  return config, bert_params_from_hf(config, tensors, head), head


def save_bert(model_dir: str | Path, config: BertConfig, params: Params, head: str) -> None:
  """Writes `config.json` + `model.safetensors` that transformers' BertModel (head="model") or
  BertForPreTraining (head="pretraining") loads."""
  model_dir = Path(model_dir)
  hf_config = bert_config_to_hf(config, head)
  tensors = bert_params_to_hf(config, params, head)
  model_dir.mkdir(parents=True, exist_ok=True)
  (model_dir / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
  save_file(tensors, str(model_dir / WEIGHTS_FILE), metadata={"format": "pt"})
