"""Tests for tfjax.inference.search against plain-Python references: brute-force enumeration of
every output, a step-by-step beam search with the same (fairseq) rules, argmax decoding, and a
hand-computed case.

The step function is a toy language model whose logits depend on every token fed so far through
its cache (a running hash and the token history), on the position, and on a per-example context,
so a wrong cache reorder, a wrong position or a context seen by the wrong example changes the
results. Each search is compiled once, at one small shape.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tfjax.inference import search

BOS, EOS = 1, 2
PRIME = 1_000_003
ROWS = 64  # rows of the toy model's logit tables


class ToyModel:
  """Logits = table[hash of the whole history] + table[hash of the stored tokens] + position term
  + context bias. With `eos_near_top`, the EOS logit is instead the best other logit plus an
  offset in [-1, 0.3) drawn per history hash, so EOS is often the runner-up and sometimes the
  top choice."""

  def __init__(self, vocab_size: int, max_len: int, seed: int, eos_near_top: bool = False):
    rng = np.random.default_rng(seed)
    self.vocab_size, self.max_len, self.eos_near_top = vocab_size, max_len, eos_near_top
    self.state_table = (2.0 * rng.normal(size=(ROWS, vocab_size))).astype(np.float32)
    self.history_table = rng.normal(size=(ROWS, vocab_size)).astype(np.float32)
    self.position_table = (0.5 * rng.normal(size=(max_len, vocab_size))).astype(np.float32)
    self.eos_offset = rng.uniform(-1.0, 0.3, size=ROWS).astype(np.float32)

  def initial(self, seeds: list[int]) -> tuple[dict, dict]:
    """(cache, context) for len(seeds) examples: each its own start state and logit bias."""
    rng = np.random.default_rng(seeds)
    cache = {
      "state": jnp.array(seeds, jnp.int32),
      "history": jnp.zeros((len(seeds), self.max_len), jnp.int32),
    }
    context = {"bias": jnp.asarray(rng.normal(size=(len(seeds), self.vocab_size)), jnp.float32)}
    return cache, context

  def _hash(self, state, token):
    return (state * 31 + token + 1) % PRIME

  def step_fn(self, tokens, positions, cache, context):
    token, position = tokens[:, 0], positions[:, 0]
    state = self._hash(cache["state"], token)
    history = cache["history"].at[jnp.arange(token.shape[0]), position].set(token)
    history_hash = jnp.sum(history * (jnp.arange(self.max_len) + 3), axis=1) % ROWS
    logits = (
      jnp.asarray(self.state_table)[state % ROWS]
      + jnp.asarray(self.history_table)[history_hash]
      + jnp.asarray(self.position_table)[position]
      + context["bias"]
    )
    if self.eos_near_top:
      best_other = jnp.max(logits.at[:, EOS].set(-jnp.inf), axis=1)
      logits = logits.at[:, EOS].set(best_other + jnp.asarray(self.eos_offset)[state % ROWS])
    return logits, {"state": state, "history": history}

  def log_probs(self, seed: int, bias: np.ndarray, outputs: tuple) -> np.ndarray:
    """log p(. | BOS, outputs) [V] for one example, replaying its whole history in numpy."""
    state, history = seed, np.zeros(self.max_len, np.int64)
    for position, token in enumerate((BOS,) + tuple(outputs)):
      state = self._hash(state, token)
      history[position] = token
    history_hash = int(np.sum(history * (np.arange(self.max_len) + 3)) % ROWS)
    logits = (
      self.state_table[state % ROWS]
      + self.history_table[history_hash]
      + self.position_table[len(outputs)]
      + bias
    ).astype(np.float64)
    if self.eos_near_top:
      logits[EOS] = np.max(np.delete(logits, EOS)) + self.eos_offset[state % ROWS]
    return logits - np.log(np.sum(np.exp(logits - logits.max()))) - logits.max()


def _penalty(length: int, alpha: float) -> float:
  return ((5.0 + length) / 6.0) ** alpha  # Wu et al. 2016, Eq. 14, written again here


def _pad(sequence: tuple, max_len: int) -> list[int]:
  return list(sequence) + [0] * (max_len - len(sequence))


def _scorer(model: ToyModel, seed: int, bias: np.ndarray):
  """log_probs(prefix) for one example, memoised."""
  return functools.cache(lambda prefix: model.log_probs(seed, bias, prefix))


def _brute_force(model, seed, bias, limit, alpha):
  """Every complete output (EOS at the end, or `limit` tokens), best score first."""
  log_probs = _scorer(model, seed, bias)
  hypotheses = []
  for length in range(1, limit + 1):
    for sequence in itertools.product(range(model.vocab_size), repeat=length):
      if EOS in sequence[:-1] or (sequence[-1] != EOS and length < limit):
        continue
      logp = sum(log_probs(sequence[:t])[sequence[t]] for t in range(length))
      hypotheses.append((logp / _penalty(length, alpha), sequence))
  return sorted(hypotheses, key=lambda h: -h[0])


def _reference_beam_search(model, seed, bias, limit, beam, alpha):
  """Beam search as specified, in plain Python: each step ranks the best 2 * beam extensions; one
  that ends (EOS, or `limit` tokens) is finished only if it is among the best `beam` of them, the
  best `beam` others stay alive; done once `beam` hypotheses have finished, or at the limit.

  Returns (the finished hypotheses, best score first; the number of steps run; how many EOS
  candidates were finished and how many dropped for ranking below the best `beam`)."""
  log_probs = _scorer(model, seed, bias)
  alive, finished, eos_finished, eos_dropped = [(0.0, ())], [], 0, 0
  ends = lambda seq: seq[-1] == EOS or len(seq) == limit  # noqa: E731
  for step in range(1, limit + 1):
    candidates = sorted(
      (
        (logp + log_probs(seq)[t], seq + (t,))
        for logp, seq in alive
        for t in range(model.vocab_size)
      ),
      key=lambda c: -c[0],
    )[: 2 * beam]
    new = [(logp / _penalty(len(seq), alpha), seq) for logp, seq in candidates[:beam] if ends(seq)]
    eos_finished += sum(seq[-1] == EOS for _, seq in candidates[:beam])
    eos_dropped += sum(seq[-1] == EOS for _, seq in candidates[beam:])
    alive = [c for c in candidates if not ends(c[1])][:beam]
    finished = sorted(finished + new, key=lambda h: -h[0])[:beam]  # stable: old ones win ties
    if len(finished) == beam or step == limit:
      return finished, step, eos_finished, eos_dropped


def _reference_greedy(model, seed, bias, limit):
  log_probs = _scorer(model, seed, bias)
  sequence = ()
  while len(sequence) < limit and (not sequence or sequence[-1] != EOS):
    sequence += (int(np.argmax(log_probs(sequence))),)
  return sequence, sum(log_probs(sequence[:t])[sequence[t]] for t in range(len(sequence)))


def test_exhaustive_beam_matches_brute_force_enumeration():
  """beam_size >= V**max_len keeps every hypothesis: all of them come back, ranked as by brute
  force, each example with its own context, cache start and limit; unused slots are -inf/0."""
  vocab_size, max_len, beam, alpha = 4, 3, 64, 0.6
  model, seeds, limits = ToyModel(vocab_size, max_len, seed=0), [11, 23], [3, 2]
  cache, context = model.initial(seeds)
  run = jax.jit(
    functools.partial(
      search.beam_search,
      model.step_fn,
      batch_size=2,
      beam_size=beam,
      max_len=max_len,
      bos_id=BOS,
      eos_id=EOS,
      alpha=alpha,
    )
  )
  sequences, scores = run(cache, context, max_lengths=jnp.array(limits))
  assert sequences.shape == (2, beam, max_len) and sequences.dtype == jnp.int32
  assert scores.shape == (2, beam) and scores.dtype == jnp.float32
  bests = []
  for b in range(2):
    bias = np.asarray(context["bias"][b])
    expected = _brute_force(model, seeds[b], bias, limits[b], alpha)
    count = len(expected)
    np.testing.assert_allclose(scores[b, :count], [s for s, _ in expected], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(sequences[b, :count], [_pad(q, max_len) for _, q in expected])
    assert np.all(np.asarray(scores[b, count:]) == -np.inf)
    assert not np.any(sequences[b, count:])
    bests.append(expected[0][1])
  assert bests[0] != bests[1]  # the two examples really do decode differently


def test_beam_search_matches_reference_and_stops_once_beam_have_finished():
  """A narrow beam equals a plain-Python beam search with the same rules (the cache follows its
  beams, a runner-up EOS ranked below the best `beam` is dropped), each example stops when beam
  hypotheses have finished, and the loop runs exactly until the last example is done."""
  vocab_size, max_len, beam, alpha = 5, 6, 3, 0.6
  model, seeds, limits = ToyModel(vocab_size, max_len, seed=2), [11, 12, 13], [6, 4, 1]
  cache, context = model.initial(seeds)
  steps = []

  def counted_step_fn(tokens, positions, cache, context):
    jax.debug.callback(lambda p: steps.append(int(p)), positions[0, 0])
    return model.step_fn(tokens, positions, cache, context)

  run = jax.jit(
    functools.partial(
      search.beam_search,
      counted_step_fn,
      batch_size=3,
      beam_size=beam,
      max_len=max_len,
      bos_id=BOS,
      eos_id=EOS,
      alpha=alpha,
    )
  )
  sequences, scores = run(cache, context, max_lengths=jnp.array(limits))
  jax.effects_barrier()
  stop_steps, eos_dropped = [], 0
  for b in range(3):
    bias = np.asarray(context["bias"][b])
    expected, stop_step, _, dropped = _reference_beam_search(
      model, seeds[b], bias, limits[b], beam, alpha
    )
    stop_steps.append(stop_step)
    eos_dropped += dropped
    count = len(expected)
    np.testing.assert_allclose(scores[b, :count], [s for s, _ in expected], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(sequences[b, :count], [_pad(q, max_len) for _, q in expected])
    assert np.all(np.asarray(scores[b, count:]) == -np.inf)
    assert np.all(np.count_nonzero(sequences[b], axis=1) <= limits[b])
  assert steps == list(range(max(stop_steps)))
  assert stop_steps[:2] == [4, 3]  # both before their limits, with beam finished
  assert len(set(stop_steps)) == 3  # the examples stop at different steps, frozen after
  assert eos_dropped > 0  # the rule that a runner-up EOS does not finish is exercised


def test_greedy_matches_argmax_reference_and_beam_size_one():
  """greedy_search is argmax decoding per example (EOS kept, 0 after it, limits respected), and
  beam search with beam_size=1 finds the same outputs, scored by the GNMT formula, though EOS is
  often the runner-up (which a beam that kept every EOS among the top 2 * beam would finish)."""
  vocab_size, max_len, alpha = 6, 8, 0.6
  model = ToyModel(vocab_size, max_len, seed=1, eos_near_top=True)
  seeds, limits = [3, 4, 9, 12, 13, 21], [8, 5, 1, 8, 3, 8]
  cache, context = model.initial(seeds)
  common = dict(batch_size=6, max_len=max_len, bos_id=BOS, eos_id=EOS)
  greedy = jax.jit(functools.partial(search.greedy_search, model.step_fn, **common))
  beam = jax.jit(
    functools.partial(search.beam_search, model.step_fn, beam_size=1, alpha=alpha, **common)
  )
  max_lengths = jnp.array(limits)
  greedy_out = greedy(cache, context, max_lengths=max_lengths)
  sequences, scores = beam(cache, context, max_lengths=max_lengths)
  assert greedy_out.shape == (6, max_len) and greedy_out.dtype == jnp.int32
  assert sequences.shape == (6, 1, max_len) and scores.shape == (6, 1)
  ended_by_eos, eos_ranks = [], []
  for b in range(6):
    bias = np.asarray(context["bias"][b])
    expected, logp = _reference_greedy(model, seeds[b], bias, limits[b])
    np.testing.assert_array_equal(greedy_out[b], _pad(expected, max_len))
    np.testing.assert_allclose(scores[b, 0], logp / _penalty(len(expected), alpha), rtol=1e-5)
    ended_by_eos.append(expected[-1] == EOS and len(expected) < limits[b])
    log_probs = _scorer(model, seeds[b], bias)
    eos_ranks += [  # how many tokens beat EOS at each step of the greedy path
      int(np.sum(log_probs(expected[:t]) > log_probs(expected[:t])[EOS]))
      for t in range(len(expected))
    ]
  np.testing.assert_array_equal(sequences[:, 0], greedy_out)
  assert any(ended_by_eos) and not all(ended_by_eos)  # both ways of ending are exercised
  assert eos_ranks.count(0) >= 2 and eos_ranks.count(1) >= 5  # EOS top, and often runner-up


def test_rejects_cache_without_leading_batch_axis():
  model = ToyModel(4, 3, seed=0)
  cache, context = model.initial([1, 2])
  with pytest.raises(ValueError, match="leading axis"):
    search.beam_search(
      model.step_fn, cache, context, batch_size=3, beam_size=2, max_len=3, bos_id=BOS, eos_id=EOS
    )
  with pytest.raises(ValueError, match="one limit per example"):
    search.greedy_search(
      model.step_fn,
      cache,
      context,
      batch_size=2,
      max_len=3,
      bos_id=BOS,
      eos_id=EOS,
      max_lengths=jnp.array([1, 2, 3]),
    )


def test_beam_size_one_drops_a_runner_up_eos_and_stops_at_the_top_eos():
  """Hand-computed, alpha 0: after BOS, example 0 has A 0.5 > EOS 0.4, then EOS 0.6 > A 0.4;
  example 1 has EOS 0.6 > A 0.3, then A, A, EOS near-certain. Beam 1 gives [A, EOS] (0.3) for
  example 0 though [EOS] (0.4) scores higher, since that EOS was only the runner-up; and [EOS]
  for example 1, done after one step. Both are greedy's outputs; the loop runs two steps, not
  max_len."""
  a_token, tiny = 3, 1e-13
  tables = np.log(
    np.array(
      [
        [
          [0.1, tiny, 0.4, 0.5],
          [tiny, tiny, 0.6, 0.4],
          [tiny, tiny, 1.0, tiny],
          [1.0] + [tiny] * 3,
        ],
        [
          [0.1, tiny, 0.6, 0.3],
          [tiny, tiny, tiny, 1.0],
          [tiny, tiny, tiny, 1.0],
          [tiny] * 2 + [1.0, tiny],
        ],
      ]
    )
  )
  steps = []

  def step_fn(tokens, positions, cache, context):
    jax.debug.callback(lambda p: steps.append(int(p)), positions[0, 0])
    return jnp.asarray(tables, jnp.float32)[context["example"], positions[:, 0]], cache

  common = dict(batch_size=2, max_len=4, bos_id=BOS, eos_id=EOS)
  context = {"example": jnp.arange(2)}
  sequences, scores = jax.jit(
    functools.partial(search.beam_search, step_fn, beam_size=1, alpha=0.0, **common)
  )({}, context)
  jax.effects_barrier()
  np.testing.assert_array_equal(sequences, [[[a_token, EOS, 0, 0]], [[EOS, 0, 0, 0]]])
  np.testing.assert_allclose(scores, np.log([[0.5 * 0.6], [0.6]]), rtol=1e-5)
  assert steps == [0, 1]


def test_decode_loop_counts_lengths_and_tells_eos_from_the_limit():
  """decode_loop with the greedy strategy is greedy_search; `lengths` counts each row's tokens
  (EOS included) and `finished` is True only where the row emitted EOS, not at its limit."""
  vocab_size, max_len = 6, 8
  model = ToyModel(vocab_size, max_len, seed=1, eos_near_top=True)
  seeds, limits = [3, 4, 9, 12, 13, 21], jnp.array([8, 5, 1, 8, 3, 8])
  cache, context = model.initial(seeds)
  common = dict(max_len=max_len, eos_id=EOS, max_lengths=limits)
  decoded = jax.jit(
    lambda cache, context: search.decode_loop(
      model.step_fn,
      cache,
      context,
      choose=search.greedy,
      last=jnp.full((6,), BOS, jnp.int32),
      positions=jnp.zeros((6,), jnp.int32),
      **common,
    )
  )(cache, context)
  greedy_out = search.greedy_search(
    model.step_fn, cache, context, batch_size=6, bos_id=BOS, **common
  )
  np.testing.assert_array_equal(decoded.sequences, greedy_out)
  for b in range(6):
    expected, _ = _reference_greedy(model, seeds[b], np.asarray(context["bias"][b]), limits[b])
    assert int(decoded.lengths[b]) == len(expected)
    assert bool(decoded.finished[b]) == (expected[-1] == EOS)
  assert not np.all(decoded.finished) and np.any(decoded.finished)


def test_beam_search_after_a_prefill_equals_beam_search_from_bos():
  """Feeding BOS outside the search (a one-token "prefill") and handing beam_search its logits
  (first_logits), the updated cache, and last/positions gives the search's own result: step 0
  ranks from first_logits, and step i feeds at positions + i."""
  vocab_size, max_len, beam, alpha = 5, 6, 3, 0.6
  model, seeds = ToyModel(vocab_size, max_len, seed=2), [11, 12, 13]
  cache, context = model.initial(seeds)
  common = dict(batch_size=3, beam_size=beam, max_len=max_len, bos_id=BOS, eos_id=EOS, alpha=alpha)
  expected = jax.jit(functools.partial(search.beam_search, model.step_fn, **common))(cache, context)
  bos, zero = jnp.full((3,), BOS, jnp.int32), jnp.zeros((3,), jnp.int32)
  first_logits, prefilled = model.step_fn(bos[:, None], zero[:, None], cache, context)

  # The search then starts at step 1: it feeds its first chosen token at position 0 + 1.
  @jax.jit
  def after_prefill(cache, context, first_logits):
    return search.beam_search(
      model.step_fn,
      cache,
      context,
      last=bos,
      positions=zero,
      first_logits=first_logits,
      **common,
    )

  sequences, scores = after_prefill(prefilled, context, first_logits)
  np.testing.assert_array_equal(sequences, expected[0])
  np.testing.assert_array_equal(scores, expected[1])
  with pytest.raises(ValueError, match=r"positions has shape \(2,\); pass one per example"):
    search.beam_search(model.step_fn, cache, context, positions=zero[:2], **common)
