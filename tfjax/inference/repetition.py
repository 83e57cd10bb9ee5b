"""Repetition control for decoding: logits processors over the tokens so far, for sampling and beam.

A processor is a pure function `process(logits [n, V], tokens [n, T], lengths [n]) -> [n, V]`
whose row r sees its sequence so far (prompt and generated tokens) in `tokens[r, :lengths[r]]`;
the logits are those of the next token. Shapes are static, so it traces once inside the decoding
loop. The history lives in the loop's cache (`with_history`), so beam search reorders it with
the key/value cache by parent beam, and greedy, sampling and beam need no second loop.
Processors change the logits before the strategy sees them: before temperature / top-k / top-p
(as Hugging Face orders its processors and warpers) and before beam search's log-softmax.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from tfjax.inference.search import StepFn

Array = jax.Array

# process(logits [n, V], tokens [n, T], lengths [n]) -> logits [n, V]
ProcessFn = Callable[[Array, Array, Array], Array]


def _present(tokens: Array, mask: Array, vocab_size: int) -> Array:
  """[n, V] bool: True where the row's token appears among its `mask`ed tokens [n, T]."""
  rows = jnp.arange(tokens.shape[0])[:, None]
  index = jnp.where(mask, tokens, vocab_size)  # out of range: dropped
  return jnp.zeros((tokens.shape[0], vocab_size), bool).at[rows, index].set(True, mode="drop")


def repetition_penalty(
  logits: Array, tokens: Array, lengths: Array, penalty: float | Array
) -> Array:
  """CTRL's penalised sampling (Keskar et al. 2019, §4.1): the logit of every token already in the
  row's sequence is divided by `penalty` if positive and multiplied by it if negative (Hugging
  Face's RepetitionPenaltyLogitsProcessor), so penalty > 1 makes repeats less likely; 1 is off.
  CTRL proposes 1.2. Each token is penalised once, however often it occurred."""
  valid = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]  # [n, T]
  seen = _present(tokens, valid, logits.shape[-1])  # [n, V]
  penalty = jnp.asarray(penalty, logits.dtype)
  penalised = jnp.where(logits < 0, logits * penalty, logits / penalty)
  return jnp.where(seen, penalised, logits)


def no_repeat_ngram(logits: Array, tokens: Array, lengths: Array, ngram_size: int) -> Array:
  """Bans (-inf) every token that would complete an n-gram (n = ngram_size) already present in the
  row's sequence so far, prompt included (fairseq's and Hugging Face's no_repeat_ngram_size):
  wherever the last n - 1 tokens occurred before, the token that followed them is banned."""
  num_rows, history_len = tokens.shape
  n = ngram_size
  if n < 1 or n > history_len:
    return logits
  starts = jnp.arange(history_len - n + 1)  # [J]: the n-gram tokens[j : j + n]
  matches = starts[None, :] + n <= lengths[:, None]  # [n_rows, J]: wholly in the sequence
  for k in range(n - 1):  # its first n - 1 tokens equal the sequence's last n - 1
    tail = jnp.take_along_axis(tokens, jnp.maximum(lengths - (n - 1) + k, 0)[:, None], axis=1)
    matches &= tokens[:, starts + k] == tail
  banned = _present(tokens[:, starts + n - 1], matches, logits.shape[-1])  # [n_rows, V]
  return jnp.where(banned, -jnp.inf, logits)


def repetition_control(
  no_repeat_ngram_size: int = 0, penalty: float | Array | None = None
) -> ProcessFn | None:
  """The processor for these options (penalty first, as Hugging Face orders them), or None when
  both are off (ngram size 0, penalty None), so that decoding is then exactly as without."""
  if no_repeat_ngram_size == 0 and penalty is None:
    return None

  def process(logits: Array, tokens: Array, lengths: Array) -> Array:
    if penalty is not None:
      logits = repetition_penalty(logits, tokens, lengths, penalty)
    return no_repeat_ngram(logits, tokens, lengths, no_repeat_ngram_size)

  return process


def check_options(no_repeat_ngram_size: int, repetition_penalty: float) -> None:
  """Raises a one-line ValueError for a bad option."""
  if isinstance(no_repeat_ngram_size, bool) or not isinstance(no_repeat_ngram_size, int):
    raise ValueError(f"no_repeat_ngram_size={no_repeat_ngram_size!r} must be an int (0: off)")
  if no_repeat_ngram_size < 0:
    raise ValueError(
      f"no_repeat_ngram_size={no_repeat_ngram_size} must be >= 0 (0: off; e.g. 3 bans "
      "repeating any 3-gram)"
    )
  if not repetition_penalty > 0:
    raise ValueError(
      f"repetition_penalty={repetition_penalty} must be > 0 (1.0: off; above 1, e.g. 1.2, "
      "discourages repeats)"
    )


def with_history(
  step_fn: StepFn,
  cache: Any,
  first_logits: Array,
  prompts: Array,
  prompt_lengths: Array,
  total_len: int,
  process: ProcessFn,
) -> tuple[StepFn, Any, Array]:
  """The step function, cache and first logits of a decoding loop that applies `process`.

  The cache becomes {"model": cache, "tokens": [b, total_len]}, the prompts [b, P] then each
  fed token written at its position; the step function writes the fed token there, runs
  `step_fn`, and processes its logits with the tokens up to that position. `first_logits`
  [b, V] (those of each prompt's last token) are processed with the prompt alone.
  """
  history = jnp.pad(prompts, ((0, 0), (0, total_len - prompts.shape[1])))  # [b, total_len]

  def step(tokens: Array, positions: Array, cache: Any, context: Any) -> tuple[Array, Any]:
    logits, model_cache = step_fn(tokens, positions, cache["model"], context)  # [n, V]
    rows = jnp.arange(tokens.shape[0])
    history = cache["tokens"].at[rows, positions[:, 0]].set(tokens[:, 0])
    return process(logits, history, positions[:, 0] + 1), {"model": model_cache, "tokens": history}

  return step, {"model": cache, "tokens": history}, process(first_logits, history, prompt_lengths)
