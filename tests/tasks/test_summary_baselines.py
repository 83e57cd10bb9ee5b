"""The model-free summaries: lead-N and another example's summary, scored by hand-counted ROUGE."""

import numpy as np
import pytest

from tfjax.tasks import summary_baselines


def test_mean_words_rounds_the_mean_whitespace_word_count():
  assert summary_baselines.mean_words(["one two", "a b c d"]) == 3
  assert summary_baselines.mean_words(["a\nb  c", "d"]) == 2  # (3 + 1) / 2
  assert summary_baselines.mean_words([""]) == 1  # at least one word


def test_lead_takes_the_first_n_words_joined_by_spaces():
  articles = ["one two three four", "a\nb", ""]
  assert summary_baselines.lead(articles, 2) == ["one two", "a b", ""]
  assert summary_baselines.lead(articles, 9) == ["one two three four", "a b", ""]


@pytest.mark.parametrize("n", [2, 3, 7, 50])
def test_derangement_is_a_seeded_permutation_without_fixed_points(n):
  for seed in range(20):
    perm = summary_baselines.derangement(n, seed)
    assert sorted(perm.tolist()) == list(range(n))
    assert not np.any(perm == np.arange(n))
    np.testing.assert_array_equal(perm, summary_baselines.derangement(n, seed))
  if n > 3:
    assert len({tuple(summary_baselines.derangement(n, s)) for s in range(20)}) > 1


def test_random_other_gives_each_example_another_ones_summary():
  summaries = [f"summary {i}" for i in range(10)]
  out = summary_baselines.random_other(summaries, seed=3)
  assert sorted(out) == sorted(summaries)
  assert all(o != s for o, s in zip(out, summaries, strict=True))


def test_baseline_rouge_matches_hand_counts():
  train = ["x y", "x y z w"]  # 3 words on average: lead-3
  articles = ["the cat sat on the mat", "a dog ran to the park"]
  summaries = ["a cat sat", "the dog ran far"]
  got = summary_baselines.baseline_rouge(train, articles, summaries, seed=0)
  assert list(got) == ["lead-3", "random other summary"]
  # "the cat sat" vs "a cat sat": cat, sat: 2 of 3 each side (F 2/3); bigram cat-sat, 1 of 2
  # (F 1/2); LCS cat sat (F 2/3). "a dog ran" vs "the dog ran far": dog, ran: P 2/3, R 2/4 (F
  # 4/7); bigram dog-ran: P 1/2, R 1/3 (F 2/5); LCS dog ran (F 4/7).
  expected = {
    "rouge1": (2 / 3 + 4 / 7) / 2,
    "rouge2": (1 / 2 + 2 / 5) / 2,
    "rougeL": (2 / 3 + 4 / 7) / 2,
  }
  assert got["lead-3"] == pytest.approx({k: 100 * v for k, v in expected.items()})
  # Two examples swap summaries, which share no word.
  assert got["random other summary"] == {"rouge1": 0, "rouge2": 0, "rougeL": 0}
  assert list(summary_baselines.baseline_rouge(train, articles, summaries, lead_n=1)) == [
    "lead-1",
    "random other summary",
  ]


@pytest.mark.parametrize(
  "call, problem",
  [
    (lambda: summary_baselines.lead(["a b"], 0), r"n=0 words: lead-N needs n >= 1"),
    (lambda: summary_baselines.derangement(1, 0), r"1 example\(s\): a summary of another"),
    (lambda: summary_baselines.mean_words([]), r"no texts to measure"),
  ],
)
def test_bad_input_is_one_line_naming_the_fix(call, problem):
  with pytest.raises(ValueError, match=problem):
    call()
