"""Translating with a trained Transformer: encode the source once, then greedy or beam search
over the decoder's key/value cache (Vaswani et al. 2017, §6.1: beam 4, length penalty 0.6,
output at most input length + 50).

Sources are sorted by length and decoded in batches whose source length is rounded up to a
multiple of 16, so a test set compiles a handful of shapes, each once (cached per shape).
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from tfjax.data.tokenizers.base import Tokenizer
from tfjax.inference import search
from tfjax.models.transformer import Transformer, TransformerConfig

Array = jax.Array
_LENGTH_BUCKET = 16


def init_cache(config: TransformerConfig, batch_size: int, source_len: int, length: int) -> Any:
  """An all-zero decoder key/value cache for `batch_size` rows of `length` target tokens.

  Built from shapes alone (`jax.eval_shape` of `init`): no parameters are computed.
  """
  model = Transformer(config.replace(decode=True))
  source = jax.ShapeDtypeStruct((batch_size, source_len), jnp.int32)
  target = jax.ShapeDtypeStruct((batch_size, length), jnp.int32)
  return search.zeros_cache(model.init, source, target)


@functools.lru_cache(maxsize=32)
def _translate_fn(
  config: TransformerConfig,
  batch_size: int,
  source_len: int,
  max_decode_len: int,
  beam_size: int,
  alpha: float,
  bos_id: int,
  eos_id: int,
) -> Callable[[Any, Array, Array], Array]:
  """jit(params, inputs [B, S], max_lengths [B]) -> best output [B, max_decode_len]; one per
  shape and setting (beam_size 0 = greedy)."""
  model = Transformer(config.replace(decode=True, dropout_rate=0.0, attention_dropout_rate=0.0))

  def translate(params: Any, inputs: Array, max_lengths: Array) -> Array:
    encoded = model.apply({"params": params}, inputs, method="encode")  # [B, S, d]

    def step_fn(tokens: Array, positions: Array, cache: Any, context: Any) -> tuple[Array, Any]:
      encoded, inputs = context
      logits, mutated = model.apply(
        {"params": params, "cache": cache},
        encoded,
        inputs,
        tokens,
        decoder_positions=positions,
        method="decode",
        mutable=["cache"],
      )
      return logits[:, 0], mutated["cache"]  # [n, V]

    cache = init_cache(config, batch_size, source_len, max_decode_len)
    common = dict(batch_size=batch_size, max_len=max_decode_len, bos_id=bos_id, eos_id=eos_id)
    if beam_size == 0:
      return search.greedy_search(
        step_fn, cache, (encoded, inputs), max_lengths=max_lengths, **common
      )
    sequences, _ = search.beam_search(
      step_fn,
      cache,
      (encoded, inputs),
      beam_size=beam_size,
      alpha=alpha,
      max_lengths=max_lengths,
      **common,
    )
    return sequences[:, 0]  # the best beam

  return jax.jit(translate)


def translate_ids(
  config: TransformerConfig,
  params: Any,
  sources: Sequence[Sequence[int]],
  *,
  bos_id: int,
  eos_id: int,
  beam_size: int = 4,
  alpha: float = 0.6,
  extra_len: int = 50,
  batch_size: int = 32,
) -> list[list[int]]:
  """Token ids of each source (without EOS) -> token ids of its translation (without EOS).

  `beam_size` 0 decodes greedily. Each output stops at EOS or at len(source) + 1 + extra_len
  tokens (within the model's max_len); sources must fit in max_len - 1 tokens (truncate first).
  """
  if beam_size < 0 or extra_len < 0 or batch_size < 1 or alpha < 0:
    raise ValueError(
      f"beam_size={beam_size} (0: greedy), extra_len={extra_len}, alpha={alpha} must be >= 0 "
      f"and batch_size={batch_size} >= 1"
    )
  for i, source in enumerate(sources):
    if len(source) == 0:
      raise ValueError(f"source {i} is empty; give a sentence to translate")
    if len(source) > config.max_len - 1:
      raise ValueError(
        f"source {i} has {len(source)} tokens, more than model.max_len - 1 = "
        f"{config.max_len - 1} (one slot is EOS); truncate it first"
      )
  order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
  outputs: list[list[int]] = [[] for _ in sources]
  unfinished = 0
  for start in range(0, len(order), batch_size):
    chunk = order[start : start + batch_size]
    longest = len(sources[chunk[-1]]) + 1
    source_len = min(-(-longest // _LENGTH_BUCKET) * _LENGTH_BUCKET, config.max_len)
    max_decode_len = min(source_len + extra_len, config.max_len)
    inputs = np.zeros((batch_size, source_len), np.int32)
    inputs[:, 0] = eos_id  # filler rows beyond the chunk: an empty sentence
    max_lengths = np.ones((batch_size,), np.int32)
    for row, i in enumerate(chunk):
      n = len(sources[i])
      inputs[row, : n + 1] = [*sources[i], eos_id]
      max_lengths[row] = min(n + 1 + extra_len, max_decode_len)
    fn = _translate_fn(
      config, batch_size, source_len, max_decode_len, beam_size, float(alpha), bos_id, eos_id
    )
    tokens = np.asarray(fn(params, jnp.asarray(inputs), jnp.asarray(max_lengths)))
    for row, i in enumerate(chunk):
      ids = tokens[row].tolist()
      if eos_id in ids:
        outputs[i] = ids[: ids.index(eos_id)]
      else:
        outputs[i] = ids[: max_lengths[row]]
        unfinished += 1
  if unfinished:
    logging.warning(
      "%d of %d outputs reached their length limit before EOS", unfinished, len(sources)
    )
  return outputs


def translate_texts(
  config: TransformerConfig,
  params: Any,
  tokenizer: Tokenizer,
  texts: Sequence[str],
  *,
  truncate: bool = True,
  max_source_len: int | None = None,
  **kwargs: Any,
) -> list[str]:
  """Translates sentences; `kwargs` go to `translate_ids` (beam_size, alpha, extra_len, ...).

  An empty sentence is an error; one longer than `max_source_len` tokens (default: all the
  model's positions but EOS; pass the training rows' data.max_len - 1) is cut, with a logged
  count, or an error with `truncate=False`.
  """
  for i, text in enumerate(texts):
    if not text.strip():
      raise ValueError(f"sentence {i + 1} is empty; give one non-empty sentence per line")
  limit = config.max_len - 1 if max_source_len is None else min(max_source_len, config.max_len - 1)
  sources = tokenizer.encode_batch(list(texts))
  too_long = [i + 1 for i, ids in enumerate(sources) if len(ids) > limit]
  if too_long and not truncate:
    raise ValueError(
      f"sentences {too_long} are longer than the model's {limit} source tokens; shorten them "
      "or allow truncation"
    )
  if too_long:
    logging.warning("Truncated %d sentences to %d tokens: %s", len(too_long), limit, too_long)
  sources = [ids[:limit] for ids in sources]
  outputs = translate_ids(
    config, params, sources, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id, **kwargs
  )
  return [tokenizer.decode(ids) for ids in outputs]
