"""BERT at inference: fill-mask and feature extraction on raw texts, as HF's pipelines do.

Texts of different lengths are batched, padded to the longest and masked: padding changes no
result (attention never reads a padded key). A text longer than the position table is cut
from the end, with a warning that says how many were cut, or rejected when `truncate=False`.
"""

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from tfjax.data.tokenizers.bert import BertTokenizer
from tfjax.models.bert import (
  BertConfig,
  BertForPreTraining,
  BertModel,
  BertOutput,
  attention_weights,
)


@dataclasses.dataclass(frozen=True)
class EncodedTexts:
  tokens: np.ndarray  # [b, t] int32: [CLS] text [SEP], then [PAD]
  attention_mask: np.ndarray  # [b, t] bool: True on real tokens


def encode_texts(
  tokenizer: BertTokenizer,
  texts: Sequence[str],
  max_len: int,
  *,
  allow_special: bool = False,
  truncate: bool = True,
) -> EncodedTexts:
  """[CLS] text [SEP] for each text, padded to the longest; cut to `max_len` (or an error)."""
  if isinstance(texts, str):
    raise TypeError("texts must be a sequence of strings; wrap a single text in a list")
  if not texts:
    raise ValueError("texts is empty; give at least one text")
  for i, text in enumerate(texts):
    if not text.strip():
      raise ValueError(f"text {i} is empty; every text needs at least one word")
  ids = [tokenizer.encode(t, allow_special=allow_special) for t in texts]
  budget = max_len - 2  # room for [CLS] and [SEP]
  if budget < 1:
    raise ValueError(f"max_len={max_len} leaves no room for text beside [CLS] and [SEP]")
  too_long = [i for i, x in enumerate(ids) if len(x) > budget]
  if too_long:
    cut = sum(len(ids[i]) - budget for i in too_long)
    message = (
      f"{len(too_long)} of {len(texts)} texts (e.g. text {too_long[0]}, {len(ids[too_long[0]])} "
      f"tokens) are longer than the model's {budget} tokens (max_len={max_len} with [CLS] and "
      f"[SEP])"
    )
    if not truncate:
      raise ValueError(f"{message}; shorten them or pass truncate=True to cut them")
    logging.warning("%s: cut %d tokens from their ends", message, cut)
  rows = [[tokenizer.cls_id, *x[:budget], tokenizer.sep_id] for x in ids]
  length = max(map(len, rows))
  tokens = np.full((len(rows), length), tokenizer.pad_id, np.int32)
  for i, row in enumerate(rows):
    tokens[i, : len(row)] = row
  mask = np.arange(length)[None, :] < np.array([len(r) for r in rows])[:, None]
  return EncodedTexts(tokens, mask)


# ------------------------------------------------------------------------------ fill-mask


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6))
def _top_k_at_masks(
  config: BertConfig,
  params: Any,
  tokens: jax.Array,
  mask: jax.Array,
  top_k: int,
  special_ids: tuple[int, ...],
  tokenizer_vocab_size: int,
) -> tuple[jax.Array, jax.Array]:
  """Probabilities and ids of the top_k tokens at every position [b, t, top_k]. Special tokens
  and the ids of a padded embedding table (>= the tokenizer's vocabulary) are never candidates;
  their probability still counts in the softmax."""
  mlm_logits, _ = BertForPreTraining(config).apply({"params": params}, tokens, None, mask)
  probs = jax.nn.softmax(mlm_logits, axis=-1)
  no_token = jnp.arange(probs.shape[-1]) >= tokenizer_vocab_size
  candidates = jnp.where(no_token, -1.0, probs.at[..., jnp.array(special_ids)].set(-1.0))
  _, ids = jax.lax.top_k(candidates, top_k)
  return jnp.take_along_axis(probs, ids, axis=-1), ids


def _decode_keeping_masks(tokenizer: BertTokenizer, ids: np.ndarray) -> str:
  """Text of `ids` with each [MASK] shown as "[MASK]" (decode leaves specials out)."""
  parts, start = [], 0
  for position in np.flatnonzero(ids == tokenizer.mask_id):
    parts.append(tokenizer.decode(ids[start:position]))
    start = position + 1
  parts.append(tokenizer.decode(ids[start:]))
  return " [MASK] ".join(parts).strip()


def fill_mask(
  config: BertConfig,
  params: Any,
  tokenizer: BertTokenizer,
  texts: Sequence[str],
  *,
  top_k: int = 5,
  truncate: bool = True,
) -> list[list[dict[str, Any]] | list[list[dict[str, Any]]]]:
  """The `top_k` most likely tokens for each "[MASK]" of each text (MLM head of `params`).

  Per text, as HF's fill-mask pipeline: with one [MASK], a list of candidates {"sequence" (the
  text with the mask filled), "score" (its probability), "token" (id), "token_str"}, most
  likely first; with several, one such list per [MASK], in order, the other masks shown as
  "[MASK]" in "sequence". [PAD], [CLS], [SEP] and [MASK] are never candidates.
  """
  if top_k < 1:
    raise ValueError(f"top_k={top_k} must be >= 1")
  encoded = encode_texts(tokenizer, texts, config.max_len, allow_special=True, truncate=truncate)
  tokens, mask = encoded.tokens, encoded.attention_mask
  for i, text in enumerate(texts):
    if tokenizer.mask_id not in tokens[i]:
      where = " (it was cut off: the text is too long)" if "[MASK]" in text else ""
      raise ValueError(f"text {i} has no [MASK] token{where}: {text!r}")
  special_ids = (tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id)
  scores, ids = jax.device_get(
    _top_k_at_masks(
      config,
      params,
      jnp.asarray(tokens),
      jnp.asarray(mask),
      top_k,
      special_ids,
      tokenizer.vocab_size,
    )
  )
  results = []
  for i in range(len(texts)):
    row = tokens[i][mask[i]]
    per_mask = []
    for position in np.flatnonzero(row == tokenizer.mask_id):
      candidates = []
      for score, token in zip(scores[i, position], ids[i, position], strict=True):
        filled = row.copy()
        filled[position] = token
        candidates.append(
          {
            "sequence": _decode_keeping_masks(tokenizer, filled),
            "score": float(score),
            "token": int(token),
            "token_str": tokenizer.decode([token]),
          }
        )
      per_mask.append(candidates)
    results.append(per_mask[0] if len(per_mask) == 1 else per_mask)
  return results


# ------------------------------------------------------------------------------- features


@dataclasses.dataclass(frozen=True)
class Features:
  """Hidden states of a batch of texts; padded positions are zero."""

  hidden_states: np.ndarray  # [b, t, d] of the chosen layer, or [layers + 1, b, t, d]
  attention_mask: np.ndarray  # [b, t] bool
  tokens: np.ndarray  # [b, t] int32
  attention_weights: np.ndarray | None = None  # [layers, b, heads, t, t] when asked for

  def mean_pooled(self) -> np.ndarray:
    """[b, d]: the mean over each text's real tokens (sentence embeddings, as
    sentence-transformers' mean pooling)."""
    if self.hidden_states.ndim != 3:
      raise ValueError("mean_pooled needs one layer's features; call features(..., layer=...)")
    mask = self.attention_mask[..., None].astype(np.float32)
    return (self.hidden_states * mask).sum(axis=1) / mask.sum(axis=1)


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("return_attention",))
def _encode(
  config: BertConfig, params: Any, tokens: jax.Array, mask: jax.Array, *, return_attention: bool
) -> tuple[BertOutput, jax.Array | None]:
  """The encoder's outputs, and every layer's attention weights [layers, b, h, q, k] only with
  `return_attention` (otherwise no intermediates are collected)."""
  model = BertModel(config)
  variables = {"params": params}
  if not return_attention:
    return model.apply(variables, tokens, None, mask, return_hidden_states=True), None
  out, state = model.apply(
    variables, tokens, None, mask, return_hidden_states=True, mutable=["intermediates"]
  )
  return out, jnp.stack(attention_weights(state))


def features(
  config: BertConfig,
  params: Any,
  tokenizer: BertTokenizer,
  texts: Sequence[str],
  *,
  layer: int | None = -1,
  return_attention: bool = False,
  truncate: bool = True,
) -> Features:
  """Hidden states of `texts` from the encoder of `params` (a BertModel's, or any head's: its
  "bert" subtree is used). `layer`: an index into the embeddings' output (0) and the layers'
  (1..num_layers; -1 the last), or None for all of them. `return_attention`: also every
  layer's attention weights (padded keys get weight 0)."""
  encoder_params = params.get("bert", params)
  encoded = encode_texts(tokenizer, texts, config.max_len, truncate=truncate)
  out, weights = jax.device_get(
    _encode(
      config,
      encoder_params,
      jnp.asarray(encoded.tokens),
      jnp.asarray(encoded.attention_mask),
      return_attention=return_attention,
    )
  )
  states = np.stack(out.hidden_states)  # [layers + 1, b, t, d]
  if layer is not None and not -len(states) <= layer < len(states):
    raise ValueError(
      f"layer={layer} is out of range: 0 is the embeddings' output, 1..{config.num_layers} the "
      "layers (-1 the last), None all of them"
    )
  if layer is not None:
    states = states[layer]
  states = np.where(encoded.attention_mask[..., None], states, 0.0)
  return Features(states, encoded.attention_mask, encoded.tokens, weights)
