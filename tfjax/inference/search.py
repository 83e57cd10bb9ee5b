"""Greedy and beam search over any cached step function, jit-traceable, one `lax.while_loop` each.

The model is seen only through `step_fn(tokens [n, 1], positions [n, 1], cache, context) -> (logits
[n, V], new cache)`, so the same search decodes the encoder-decoder Transformer, a GPT or a test's
toy function; the cache is any per-row decoding state (keys/values, and for repetition control the
tokens so far), which beam search reorders by parent beam. `decode_loop` emits one token per step,
chosen by a strategy from the step's logits: `greedy` (argmax) here, temperature / top-k / top-p
sampling in `sampling.py`; it is the library's one greedy decoder. Beam search keeps alive and
finished hypotheses apart and ranks the top 2 * beam candidates each step (as Flax's
`examples/wmt/decode.py` and Tensor2Tensor do), but finishes and stops by fairseq's rules
(`fairseq/sequence_generator.py`; also Hugging Face's `early_stopping=True`): an ending candidate is
finished only if it ranks within the top beam of its step, and an example is done once beam
hypotheses have finished. So beam_size=1 is exactly greedy decoding. Scores are normalised with the
GNMT length penalty (Wu et al. 2016, §7, Eq. 14); the Transformer used beam 4, alpha 0.6 and a
maximum output length of input length + 50 (Vaswani et al. 2017, §6.1).

Conventions shared by `greedy_search` and `beam_search`:
- decoding feeds `bos_id` at position 0 and the token fed at step i is at position i, unless
  `beam_search` is given per-example `last` tokens and `positions` (after a GPT's prompt);
- output sequences exclude BOS, include the EOS token, and hold 0 (the pad id) after it;
- `max_len` (static) is the number of output positions; `max_lengths` [batch] (optional) is a
  per-example limit, clipped to [1, max_len]: a hypothesis that reaches it without EOS ends
  there as it is, and is scored with that length.
"""

import numbers
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

Array = jax.Array

# step_fn(tokens [n, 1] int32, positions [n, 1] int32, cache, context)
#   -> (logits [n, V] float32, new cache)
StepFn = Callable[[Array, Array, Any, Any], tuple[Array, Any]]
# choose(step int32, logits [n, V]) -> tokens [n] int32: a decoding strategy.
ChooseFn = Callable[[Array, Array], Array]


def zeros_cache(init: Callable[..., Any], *inputs: jax.ShapeDtypeStruct) -> Any:
  """The all-zero "cache" collection of `init(rng, *inputs)` (a decoding model's `init`), built
  from shapes alone (`jax.eval_shape`): no parameters are computed."""
  shapes = jax.eval_shape(init, jax.random.key(0), *inputs)["cache"]
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def length_penalty(length: Array | int, alpha: float | Array) -> Array:
  """GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al. 2016, Eq. 14); a hypothesis'
  score is its summed log-probability divided by this, so long outputs are not unduly punished.
  `length` counts the EOS token; alpha 0 scores by log-probability alone."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** jnp.asarray(alpha, jnp.float32)


def _check_batch_leading(tree: Any, batch_size: int, name: str) -> None:
  """Raises if a leaf of `tree` does not have the batch as its leading axis (scalars are shared)."""
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    shape = jnp.shape(leaf)
    if shape and shape[0] != batch_size:
      raise ValueError(
        f"{name} leaf {jax.tree_util.keystr(path)} has shape {shape}, but every {name} leaf must "
        f"have the batch (batch_size={batch_size}) as its leading axis; build the {name} for "
        f"{batch_size} examples (beam_search expands it to the beams itself)"
      )


def _limits(max_lengths: Array | None, batch_size: int, max_len: int) -> Array:
  """Per-example output-length limits [batch] int32 in [1, max_len]."""
  if max_lengths is None:
    return jnp.full((batch_size,), max_len, jnp.int32)
  if jnp.shape(max_lengths) != (batch_size,):
    raise ValueError(
      f"max_lengths has shape {jnp.shape(max_lengths)}; pass one limit per example, shape "
      f"({batch_size},), or None for max_len={max_len} everywhere"
    )
  return jnp.clip(jnp.asarray(max_lengths, jnp.int32), 1, max_len)


def _check_sizes(batch_size: int, max_len: int, beam_size: int = 1) -> None:
  for name, value in (("batch_size", batch_size), ("max_len", max_len), ("beam_size", beam_size)):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
      raise ValueError(f"{name}={value!r} must be an int >= 1 (a static size of the loop's arrays)")


# ----------------------------------------------------------------------------------------------
# One token per step: greedy search, and the loop that sampling shares.
# ----------------------------------------------------------------------------------------------


def greedy(step: Array, logits: Array) -> Array:
  """The greedy strategy: the most likely token of each row of logits [n, V] -> [n]."""
  del step  # the same choice at every step
  return jnp.argmax(logits, axis=-1).astype(jnp.int32)


@flax.struct.dataclass
class Decoded:
  """Output of `decode_loop`.

  sequences: [batch, max_len] int32, the chosen tokens (EOS included), pad_id after each end.
  lengths: [batch] tokens emitted per row, EOS included.
  finished: [batch] True where the row emitted eos_id (not where it reached its limit).
  """

  sequences: Array
  lengths: Array
  finished: Array


def decode_loop(
  step_fn: StepFn,
  cache: Any,
  context: Any,
  *,
  choose: ChooseFn,
  last: Array,
  positions: Array,
  max_len: int,
  eos_id: int | Array,
  pad_id: int | Array = 0,
  max_lengths: Array | None = None,
  first_logits: Array | None = None,
) -> Decoded:
  """Emits up to `max_len` tokens per row, `choose(step, logits)` at each step; a row stops at its
  EOS or its limit, the loop when all rows have.

  Step i feeds each row's last token [batch] at `positions + i` ([batch]: the position of
  `last`), so rows may start at different positions (prompts of different lengths). With
  `first_logits` [batch, V] (the logits of `last`, e.g. from a prefill pass) step 0 chooses from
  them and calls no step_fn. A finished row is fed pad_id; its outputs are discarded.
  """
  batch_size = last.shape[0]
  limits = _limits(max_lengths, batch_size, max_len)

  def advance(state: tuple, step: Array, logits: Array, cache: Any) -> tuple:
    _, sequences, _, lengths, done, finished, _ = state
    chosen = choose(step, logits)
    token = jnp.where(done, pad_id, chosen)  # pad after the end
    sequences = sequences.at[:, step].set(token)
    finished = finished | (~done & (chosen == eos_id))
    lengths = lengths + (~done).astype(jnp.int32)
    done = done | (token == eos_id) | (step + 1 >= limits)
    return step + 1, sequences, token, lengths, done, finished, cache

  def not_done(state: tuple) -> Array:
    step, *_, done, _, _ = state
    return (step < max_len) & ~jnp.all(done)

  def step(state: tuple) -> tuple:
    i, _, token, *_, cache = state
    logits, cache = step_fn(token[:, None], (positions + i)[:, None], cache, context)  # [n, V]
    return advance(state, i, logits, cache)

  no = jnp.zeros((batch_size,), bool)
  state = (
    jnp.int32(0),
    jnp.full((batch_size, max_len), pad_id, jnp.int32),
    last.astype(jnp.int32),
    jnp.zeros((batch_size,), jnp.int32),
    no,
    no,
    cache,
  )
  if first_logits is not None:
    state = advance(state, jnp.int32(0), first_logits, cache)
  _, sequences, _, lengths, _, finished, _ = jax.lax.while_loop(not_done, step, state)
  return Decoded(sequences=sequences, lengths=lengths, finished=finished)


def greedy_search(
  step_fn: StepFn,
  cache: Any,
  context: Any,
  *,
  batch_size: int,
  max_len: int,
  bos_id: int,
  eos_id: int,
  max_lengths: Array | None = None,
) -> Array:
  """The argmax token at each step; an example stops at its EOS or its limit, the loop when all
  have. Returns sequences [batch, max_len] int32 (EOS included, 0 after it).

  `cache` and `context` are pytrees whose leaves have the batch as leading axis.
  """
  _check_sizes(batch_size, max_len)
  _check_batch_leading(cache, batch_size, "cache")
  _check_batch_leading(context, batch_size, "context")
  decoded = decode_loop(
    step_fn,
    cache,
    context,
    choose=greedy,
    last=jnp.full((batch_size,), bos_id, jnp.int32),
    positions=jnp.zeros((batch_size,), jnp.int32),
    max_len=max_len,
    eos_id=eos_id,
    max_lengths=max_lengths,
  )
  return decoded.sequences


# ----------------------------------------------------------------------------------------------
# Beam search.
# ----------------------------------------------------------------------------------------------


def _gather_beams(x: Array, indices: Array) -> Array:
  """x [batch, m, ...], indices [batch, k] into axis 1 -> [batch, k, ...]."""
  return jax.vmap(lambda row, idx: row[idx])(x, indices)


def beam_search(
  step_fn: StepFn,
  cache: Any,
  context: Any,
  *,
  batch_size: int,
  beam_size: int,
  max_len: int,
  bos_id: int,
  eos_id: int,
  alpha: float | Array = 0.6,
  max_lengths: Array | None = None,
  last: Array | None = None,
  positions: Array | None = None,
  first_logits: Array | None = None,
) -> tuple[Array, Array]:
  """Beam search with the GNMT length penalty (Wu et al. 2016, §7) and fairseq's rules for
  finishing and stopping.

  Args:
    step_fn: the cached model step (see `StepFn`), called on batch_size * beam_size rows.
    cache: pytree of leaves [batch, ...] (scalar leaves are shared and left alone); expanded
      here to [batch * beam, ...], beam-major within an example (row b * beam + k), and
      reordered along axis 0 by the chosen parent beams after every step.
    context: pytree of leaves [batch, ...], per-example constants (encoder output, source
      mask); expanded like the cache, never reordered.
    alpha: length-penalty exponent; scores are sum of log-probs / ((5 + length) / 6) ** alpha,
      length counting the EOS.
    max_lengths: optional [batch] limits <= max_len (e.g. source length + 50).
    last, positions: optional [batch] token fed first and its position (default: bos_id at 0);
      step i feeds each beam's last token at `positions + i`, as `decode_loop` does, so a GPT
      continues prompts of different lengths, each example at its own position.
    first_logits: optional [batch, V], the logits of `last` (e.g. from a prefill pass): step 0
      ranks its candidates from them and calls no step_fn.

  Returns:
    (sequences [batch, beam, max_len] int32, scores [batch, beam] float32), best score first.
    When fewer than beam_size hypotheses finished (tiny vocabulary and max_len), the remaining
    slots have score -inf and all-zero sequences.

  Each step ranks the top 2 * beam (parent, token) extensions of the alive beams by summed
  log-prob. A candidate that ends (EOS, or the example's limit) is finished only if it ranks
  within the top beam_size of them (fairseq's `eos_mask[:, :beam_size]`); one ranked lower is
  dropped. The best beam_size candidates that do not end stay alive (2 * beam candidates hold at
  most beam EOS ones, one per parent, so the alive set stays full). The finished set keeps the
  best beam_size by normalised score. An example is done, and frozen, once beam_size hypotheses
  have finished (fairseq's stopping rule, Hugging Face's `early_stopping=True`) or at its limit,
  where everything alive ends; the loop ends when all are done. These rules make beam_size=1
  exactly `greedy_search`: an EOS that is the top candidate ends the example, a runner-up EOS is
  dropped. They do not search exhaustively: a hypothesis still alive when the example is done
  could have scored better after the length penalty, as in fairseq.
  """
  _check_sizes(batch_size, max_len, beam_size)
  _check_batch_leading(cache, batch_size, "cache")
  _check_batch_leading(context, batch_size, "context")
  limits = _limits(max_lengths, batch_size, max_len)
  last = jnp.full((batch_size,), bos_id, jnp.int32) if last is None else last
  positions = jnp.zeros((batch_size,), jnp.int32) if positions is None else positions
  for name, value in (("last", last), ("positions", positions)):
    if jnp.shape(value) != (batch_size,):
      raise ValueError(
        f"{name} has shape {jnp.shape(value)}; pass one per example, ({batch_size},)"
      )
  if first_logits is not None and jnp.ndim(first_logits) != 2:
    raise ValueError(f"first_logits has shape {jnp.shape(first_logits)}; pass [batch, vocab]")
  n = batch_size * beam_size
  neg_inf = jnp.float32(-jnp.inf)

  def expand(x):  # [batch, ...] -> [batch * beam, ...], row b * beam + k
    return jnp.repeat(x, beam_size, axis=0) if jnp.ndim(x) else x

  cache = jax.tree.map(expand, cache)
  context = jax.tree.map(expand, context)

  def done_examples(i, finished_scores):  # [batch]: beam_size finished, or the limit reached
    return (jnp.sum(finished_scores > neg_inf, axis=1) >= beam_size) | (i >= limits)

  def not_done(state):
    i, _, _, _, finished_scores, _, _ = state
    return (i < max_len) & ~jnp.all(done_examples(i, finished_scores))

  def advance(state, logits, cache):  # one step from the logits [n, V] of the beams' last tokens
    i, live_logp, live_seqs, _, finished_scores, finished_seqs, _ = state
    done = done_examples(i, finished_scores)  # [batch]
    vocab_size = logits.shape[-1]
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    # A row whose every token is banned (repetition control) has no finite logit: its
    # log_softmax is NaN, and where top_k ranks NaN is up to the backend. It has no extension.
    log_probs = jnp.where(jnp.isnan(log_probs), neg_inf, log_probs)
    candidates = live_logp[..., None] + log_probs.reshape(batch_size, beam_size, vocab_size)
    num_candidates = min(2 * beam_size, beam_size * vocab_size)
    # Best first; ties go to the lower (parent, token) index.
    top_logp, top_index = jax.lax.top_k(candidates.reshape(batch_size, -1), num_candidates)
    parent, token = top_index // vocab_size, (top_index % vocab_size).astype(jnp.int32)
    top_seqs = _gather_beams(live_seqs, parent).at[:, :, i].set(token)  # [batch, 2k, max_len]
    ends = (token == eos_id) | (i + 1 >= limits)[:, None]

    # Alive: the best beam_size candidates that do not end here.
    live_logp_new, alive = jax.lax.top_k(
      jnp.where(ends | done[:, None], neg_inf, top_logp), beam_size
    )
    live_seqs = _gather_beams(top_seqs, alive)
    last = _gather_beams(token, alive)
    flat_parent = jnp.arange(batch_size)[:, None] * beam_size + _gather_beams(parent, alive)
    cache = jax.tree.map(lambda x: x[flat_parent.reshape(n)] if jnp.ndim(x) else x, cache)

    # Finished: the best beam_size of the old finished and the candidates that end here and rank
    # within the top beam_size of this step (an ending candidate ranked lower is dropped).
    in_top_beam = jnp.arange(num_candidates) < beam_size
    finishes = ends & in_top_beam[None, :] & ~done[:, None]  # done examples are frozen
    new_scores = jnp.where(finishes, top_logp / length_penalty(i + 1, alpha), neg_inf)
    merged_scores = jnp.concatenate([finished_scores, new_scores], axis=1)
    merged_seqs = jnp.concatenate([finished_seqs, top_seqs], axis=1)
    finished_scores, keep = jax.lax.top_k(merged_scores, beam_size)  # old ones win ties
    finished_seqs = _gather_beams(merged_seqs, keep)
    return i + 1, live_logp_new, live_seqs, last, finished_scores, finished_seqs, cache

  def step(state):
    i, _, _, last, _, _, cache = state
    fed_at = (start + i)[:, None]  # [n, 1]
    logits, cache = step_fn(last.reshape(n, 1), fed_at, cache, context)  # [n, V]
    return advance(state, logits, cache)

  zeros = jnp.zeros((batch_size, beam_size, max_len), jnp.int32)
  start = expand(jnp.asarray(positions, jnp.int32))  # [n]: the position of each beam's `last`
  state = (
    jnp.int32(0),
    # One alive beam per example at first: the others are -inf, so they never win a slot.
    jnp.tile(jnp.array([0.0] + [-jnp.inf] * (beam_size - 1), jnp.float32), (batch_size, 1)),
    zeros,
    jnp.broadcast_to(jnp.asarray(last, jnp.int32)[:, None], (batch_size, beam_size)),
    jnp.full((batch_size, beam_size), neg_inf),
    zeros,
    cache,
  )
  if first_logits is not None:
    state = advance(state, expand(first_logits), cache)
  _, _, _, _, scores, sequences, _ = jax.lax.while_loop(not_done, step, state)
  sequences = jnp.where((scores > neg_inf)[..., None], sequences, 0)
  return sequences, scores
