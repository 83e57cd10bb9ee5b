"""Hugging Face BERT checkpoints <-> tfjax BERT parameters: the name table and config.json.

Reads `BertModel` checkpoints (names with or without the "bert." prefix: sentence-transformers
files have none) and `BertForPreTraining` ones (plus `cls.predictions.*`, `cls.seq_relationship.*`)
and writes both; `tfjax.hub.engine` does the conversion and its checks, `tfjax.hub.files` the
directory.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from tfjax.hub import engine, files
from tfjax.hub.engine import Params, Row
from tfjax.hub.hf_config import ConfigSpec, config_fields, config_json, hf_values, summary
from tfjax.models.bert import HEADS, BertConfig

VOCAB_FILE = "vocab.txt"
HF_PREFIX = "bert."  # BertForPreTraining (and the other task models) nest the body under it
BODY_PATH = "bert/"  # ... as our heads do
HEAD_ARCHITECTURES = {"model": "BertModel", "pretraining": "BertForPreTraining"}

_QKV = "layer_{i}/self_attention/qkv/"
# The encoder + pooler (BertModel). HF keeps q, k and v as three nn.Linear; our attention has
# one fused projection [d, 3d] laid out q | k | v (as GPT-2's c_attn), so each fills a third.
BERT_PARAM_NAMES: tuple[Row, ...] = (
  Row("embeddings.word_embeddings.weight", "embeddings/token_embed/embedding"),
  Row("embeddings.position_embeddings.weight", "embeddings/position_embed/embedding"),
  Row("embeddings.token_type_embeddings.weight", "embeddings/segment_embed/embedding"),
  Row("embeddings.LayerNorm.weight", "embeddings/embed_norm/scale"),
  Row("embeddings.LayerNorm.bias", "embeddings/embed_norm/bias"),
  Row("encoder.layer.{i}.attention.self.query.weight", _QKV + "kernel", "transpose", 0),
  Row("encoder.layer.{i}.attention.self.key.weight", _QKV + "kernel", "transpose", 1),
  Row("encoder.layer.{i}.attention.self.value.weight", _QKV + "kernel", "transpose", 2),
  Row("encoder.layer.{i}.attention.self.query.bias", _QKV + "bias", "as_is", 0),
  Row("encoder.layer.{i}.attention.self.key.bias", _QKV + "bias", "as_is", 1),
  Row("encoder.layer.{i}.attention.self.value.bias", _QKV + "bias", "as_is", 2),
  Row(
    "encoder.layer.{i}.attention.output.dense.weight",
    "layer_{i}/self_attention/out/kernel",
    "transpose",
  ),
  Row("encoder.layer.{i}.attention.output.dense.bias", "layer_{i}/self_attention/out/bias"),
  Row("encoder.layer.{i}.attention.output.LayerNorm.weight", "layer_{i}/self_attention_norm/scale"),
  Row("encoder.layer.{i}.attention.output.LayerNorm.bias", "layer_{i}/self_attention_norm/bias"),
  Row("encoder.layer.{i}.intermediate.dense.weight", "layer_{i}/mlp/hidden/kernel", "transpose"),
  Row("encoder.layer.{i}.intermediate.dense.bias", "layer_{i}/mlp/hidden/bias"),
  Row("encoder.layer.{i}.output.dense.weight", "layer_{i}/mlp/output/kernel", "transpose"),
  Row("encoder.layer.{i}.output.dense.bias", "layer_{i}/mlp/output/bias"),
  Row("encoder.layer.{i}.output.LayerNorm.weight", "layer_{i}/mlp_norm/scale"),
  Row("encoder.layer.{i}.output.LayerNorm.bias", "layer_{i}/mlp_norm/bias"),
  Row("pooler.dense.weight", "pooler/kernel", "transpose"),
  Row("pooler.dense.bias", "pooler/bias"),
)
# The task layers of each head, beside "bert/". The MLM decoder is tied to the word embeddings
# (`cls.predictions.decoder.weight` is that tensor; see BERT.tied_copies), only its bias is its own.
BERT_HEAD_PARAM_NAMES: dict[str, tuple[Row, ...]] = {
  "model": (),
  "pretraining": (
    Row("cls.predictions.transform.dense.weight", "mlm_transform/kernel", "transpose"),
    Row("cls.predictions.transform.dense.bias", "mlm_transform/bias"),
    Row("cls.predictions.transform.LayerNorm.weight", "mlm_norm/scale"),
    Row("cls.predictions.transform.LayerNorm.bias", "mlm_norm/bias"),
    Row("cls.predictions.bias", "mlm_output_bias"),
    Row("cls.seq_relationship.weight", "nsp/kernel", "transpose"),
    Row("cls.seq_relationship.bias", "nsp/bias"),
  ),
}
# Buffers some checkpoints carry (position ids 0..max_len-1): not parameters, ignored on import.
BERT_BUFFERS: tuple[str, ...] = ("embeddings.position_ids", "embeddings.token_type_ids")
BERT = engine.Family(
  name="BERT",
  model="BERT",
  rows=BERT_PARAM_NAMES + tuple(r for rows in BERT_HEAD_PARAM_NAMES.values() for r in rows),
  prefix=HF_PREFIX,
  task_prefixes=("cls.", "classifier.", "qa_outputs."),
  task_hint="; a task head tfjax does not import: load the encoder alone with head='model'",
  buffers=BERT_BUFFERS,
  renames=(("LayerNorm.gamma", "LayerNorm.weight"), ("LayerNorm.beta", "LayerNorm.bias")),
  # Older files write the tied MLM decoder out: its weight is the word embeddings, its bias is
  # cls.predictions.bias.
  tied_copies=(
    ("cls.predictions.decoder.weight", "embeddings.word_embeddings.weight"),
    ("cls.predictions.decoder.bias", "cls.predictions.bias"),
  ),
  untied_copy=(
    "an untied MLM decoder, which tfjax's BertForPreTraining (decoder tied to the token "
    "embedding) does not implement"
  ),
)

BERT_CONFIG = ConfigSpec(
  model_type="bert",
  family="BERT",
  classes="BertModel, BertForPreTraining or a sentence-transformers BERT",
  model="BERT",
  fields=(  # HF's BertConfig
    ("vocab_size", "vocab_size", 30522),
    ("max_position_embeddings", "max_len", 512),
    ("type_vocab_size", "type_vocab_size", 2),
    ("num_hidden_layers", "num_layers", 12),
    ("num_attention_heads", "num_heads", 12),
    ("hidden_size", "d_model", 768),
    ("intermediate_size", "d_ff", 3072),
    ("hidden_dropout_prob", "dropout_rate", 0.1),
    ("attention_probs_dropout_prob", "attention_dropout_rate", 0.1),
    ("layer_norm_eps", "layer_norm_epsilon", 1e-12),
    ("initializer_range", "init_std", 0.02),
    ("pad_token_id", "pad_id", 0),
  ),
  activation=("hidden_act", "gelu"),
  fixed=(
    ("position_embedding_type", "absolute", "relative position embeddings (Shaw et al. / Huang)"),
    ("is_decoder", False, "a causal decoder BERT"),
    ("add_cross_attention", False, "cross-attention layers (an encoder-decoder BERT)"),
  ),
  other_defaults={},
)


# ----------------------------------------------------------------------------------------------
# Config.
# ----------------------------------------------------------------------------------------------


def bert_config_from_hf(hf_config: Mapping[str, Any]) -> BertConfig:
  """The BertConfig of an HF BERT `config.json` (as a dict); unsupported options raise."""
  if "model_type" not in hf_config and "hidden_size" not in hf_config:
    raise ValueError(
      f"this config.json has neither model_type nor hidden_size ({sorted(hf_config)[:6]}...): "
      "not a model's config; give the directory of the HF BERT checkpoint itself (with "
      "model.safetensors beside its config.json)"
    )
  return BertConfig(**config_fields(BERT_CONFIG, hf_values(BERT_CONFIG, hf_config)))


def bert_config_to_hf(config: BertConfig, head: str = "pretraining") -> dict[str, Any]:
  """The HF `config.json` dict of a BertConfig, for `BertModel` or `BertForPreTraining`."""
  _check_head(head)
  return {
    **config_json(BERT_CONFIG, config),
    "architectures": [HEAD_ARCHITECTURES[head]],
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


def _target(config: BertConfig, head: str) -> engine.Target:
  _check_head(head)
  nested = head != "model"
  keys = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "type_vocab_size",
  )
  return engine.Target(
    shapes=engine.abstract_params(HEADS[head](config)),
    num_layers=config.num_layers,
    description=f"{HEAD_ARCHITECTURES[head]} with num_layers={config.num_layers}",
    summary=summary(BERT_CONFIG, config, keys),
    body_path=BODY_PATH if nested else "",
    hf_prefix=HF_PREFIX if nested else "",
    lora=config.lora,
  )


def detect_head(tensors: Mapping[str, np.ndarray]) -> str:
  """ "pretraining" when the (normalized) tensors hold the MLM and NSP heads, "model" when they
  hold no task head; other heads raise, naming them."""
  found = sorted({".".join(n.split(".")[:2]) for n in tensors if n.startswith(BERT.task_prefixes)})
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
  target = _target(config, head)
  tensors = engine.normalize(BERT, tensors)
  if head == "model":
    dropped = sorted(n for n in tensors if n.startswith(BERT.task_prefixes))
    if dropped:
      logging.info("BERT import as BertModel: dropping the task layers %s", dropped)
    tensors = {n: a for n, a in tensors.items() if n not in dropped}
  return engine.params_from_hf(BERT, target, tensors)


def bert_params_to_hf(config: BertConfig, params: Params, head: str) -> dict[str, np.ndarray]:
  """HF tensors of `BertModel` (head="model": no prefix) or `BertForPreTraining` ("bert."
  prefix on the body) from our `params` of `HEADS[head](config)`."""
  return engine.params_to_hf(BERT, _target(config, head), params)


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
  hf_config = files.read_config(model_dir)
  tensors = engine.normalize(BERT, files.read_safetensors(model_dir))
  config = bert_config_from_hf(hf_config)
  if (model_dir / VOCAB_FILE).is_file():
    check_vocab_matches(config, vocab_txt_size(model_dir / VOCAB_FILE))
  head = detect_head(tensors) if head is None else head
  _check_head(head)
  return config, bert_params_from_hf(config, tensors, head), head


def save_bert(model_dir: str | Path, config: BertConfig, params: Params, head: str) -> None:
  """Writes `config.json` + `model.safetensors` that transformers' BertModel (head="model") or
  BertForPreTraining (head="pretraining") loads."""
  hf = bert_config_to_hf(config, head)
  files.write_checkpoint(model_dir, hf, bert_params_to_hf(config, params, head))
