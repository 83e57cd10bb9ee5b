"""Tests for tfjax.inference.repetition against plain-Python transcriptions of Hugging Face's
NoRepeatNGramLogitsProcessor and RepetitionPenaltyLogitsProcessor, on small random cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tfjax.inference import repetition


def _naive_banned(sequence: list[int], n: int) -> set[int]:
  """HF's `_get_ngrams` + `_get_generated_ngrams`: the tokens that followed every earlier
  occurrence of the sequence's last n - 1 tokens."""
  if len(sequence) + 1 < n:
    return set()
  followers: dict[tuple, set[int]] = {}
  for j in range(len(sequence) - n + 1):
    gram = tuple(sequence[j : j + n])
    followers.setdefault(gram[:-1], set()).add(gram[-1])
  return followers.get(tuple(sequence[len(sequence) - n + 1 :]), set())


def _naive_penalty(logits: np.ndarray, sequence: list[int], penalty: float) -> np.ndarray:
  out = logits.copy()
  for token in set(sequence):
    out[token] = logits[token] * penalty if logits[token] < 0 else logits[token] / penalty
  return out


def _random_case(seed: int, rows: int = 16, history_len: int = 10, vocab_size: int = 4):
  """Few distinct tokens (so n-grams repeat), rows of every length, junk after each length."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(0, vocab_size, (rows, history_len))
  lengths = rng.integers(0, history_len + 1, rows)
  lengths[:2] = [0, history_len]
  logits = rng.normal(size=(rows, vocab_size)).astype(np.float32)
  return logits, tokens, lengths


@pytest.mark.parametrize("n", [1, 2, 3, 4, 11])
def test_no_repeat_ngram_matches_naive_reference(n):
  banned_some = False
  for seed in range(6):
    logits, tokens, lengths = _random_case(seed)
    out = np.asarray(repetition.no_repeat_ngram(jnp.asarray(logits), tokens, lengths, n))
    for r in range(len(tokens)):
      banned = _naive_banned(tokens[r, : lengths[r]].tolist(), n)
      expected = logits[r].copy()
      expected[list(banned)] = -np.inf
      np.testing.assert_array_equal(out[r], expected)
      banned_some |= bool(banned)
  assert banned_some == (n <= 4)  # an 11-gram never fits in 10 tokens


def test_repetition_penalty_matches_naive_reference():
  for seed, penalty in [(0, 1.2), (1, 2.0), (2, 0.5)]:
    logits, tokens, lengths = _random_case(seed)
    out = repetition.repetition_penalty(jnp.asarray(logits), tokens, lengths, penalty)
    for r in range(len(tokens)):
      expected = _naive_penalty(logits[r], tokens[r, : lengths[r]].tolist(), penalty)
      np.testing.assert_allclose(out[r], expected, rtol=1e-6)
    assert np.any(out != logits) and np.any((logits < 0) & (out != logits))


def test_repetition_control_is_off_by_default_and_traces_once():
  assert repetition.repetition_control() is None
  process = repetition.repetition_control(2, 1.3)
  logits, tokens, lengths = _random_case(3)
  eager = process(jnp.asarray(logits), tokens, lengths)
  expected = repetition.no_repeat_ngram(
    repetition.repetition_penalty(jnp.asarray(logits), tokens, lengths, 1.3), tokens, lengths, 2
  )
  np.testing.assert_array_equal(eager, expected)
  traced = jax.jit(lambda penalty, *a: repetition.repetition_control(2, penalty)(*a))
  np.testing.assert_allclose(traced(1.3, logits, tokens, lengths), eager, rtol=1e-6)


def test_bad_options_are_one_line_errors():
  with pytest.raises(ValueError, match=r"no_repeat_ngram_size=-1 must be >= 0 \(0: off"):
    repetition.check_options(-1, 1.0)
  with pytest.raises(ValueError, match=r"repetition_penalty=0.0 must be > 0 \(1.0: off"):
    repetition.check_options(0, 0.0)
