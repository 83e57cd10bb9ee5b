"""Summaries made without a model, the floor a trained summariser must clear on the same split:
the article's first N words (lead-N) and another example's summary (random).

Lead-N with N the mean reference length in words on the train split, rather than XSum's usual
"first sentence" (LEAD, Narayan et al. 2018): one rule that fits both our datasets. On
gem/xsum the two nearly coincide (train references average 21.1 words, the articles' first
lines 20.6), while on wiki_vital_articles the first sentence (about 21 words) would be scored
against a short description (5.7 words on average) for its length more than its content. N is
a parameter; both baselines are scored by ROUGE F-measures (`text_metrics.rouge`).
"""

from collections.abc import Sequence

import numpy as np

from tfjax.tasks import text_metrics


def mean_words(texts: Sequence[str]) -> int:
  """The mean number of whitespace-separated words of `texts`, rounded (at least 1): lead-N's
  N from the train split's references."""
  if not texts:
    raise ValueError("no texts to measure; give the train split's references")
  return max(1, round(float(np.mean([len(t.split()) for t in texts]))))


def lead(articles: Sequence[str], n: int) -> list[str]:
  """The first `n` whitespace-separated words of each article, joined by single spaces."""
  if n < 1:
    raise ValueError(f"n={n} words: lead-N needs n >= 1")
  return [" ".join(article.split()[:n]) for article in articles]


def derangement(n: int, seed: int) -> np.ndarray:
  """A seeded permutation of range(n) without fixed points: one random cycle through all n, so
  example order[k] takes the summary of order[k + 1]."""
  if n < 2:
    raise ValueError(f"{n} example(s): a summary of another example needs at least 2")
  order = np.random.default_rng(seed).permutation(n)
  perm = np.empty(n, dtype=np.int64)
  perm[order] = np.roll(order, -1)
  return perm


def random_other(summaries: Sequence[str], seed: int = 0) -> list[str]:
  """For each example, the summary of a different example of the same list (`derangement`):
  fluent, on-genre text that says nothing about this article. Two examples with the same
  summary text can still hand each other an exact copy."""
  return [summaries[j] for j in derangement(len(summaries), seed)]


def baseline_rouge(
  train_summaries: Sequence[str],
  articles: Sequence[str],
  summaries: Sequence[str],
  seed: int = 0,
  lead_n: int | None = None,
) -> dict[str, dict[str, float]]:
  """{"lead-N": ROUGE, "random other summary": ROUGE} of `articles` against their `summaries`
  (the test split), N = `lead_n` or the mean length of `train_summaries`; ROUGE as
  `text_metrics.rouge` (mean of per-example F1, x100)."""
  n = lead_n or mean_words(train_summaries)
  return {
    f"lead-{n}": text_metrics.rouge(lead(articles, n), summaries),
    "random other summary": text_metrics.rouge(random_other(summaries, seed), summaries),
  }
