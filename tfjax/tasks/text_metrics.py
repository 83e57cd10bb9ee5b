"""Scores of generated text against one reference each, in the same order: corpus BLEU
(sacrebleu), ROUGE-1/2/L F-measures (google-research's `rouge-score`) and exact match.

BLEU scores translations (Papineni et al. 2002), ROUGE summaries (Lin 2004); exact match is the
strictest check of a short response.
"""

import functools
import string
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import sacrebleu
from rouge_score import rouge_scorer

# rouge-score's names: unigram and bigram overlap, and the longest common subsequence of the
# whole text (not "rougeLsum", which splits sentences on newlines).
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def _check_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> None:
  if len(hypotheses) != len(references):
    raise ValueError(
      f"got {len(hypotheses)} hypotheses and {len(references)} references; give one hypothesis "
      "per reference, in the same order"
    )
  if not references:
    raise ValueError("no hypotheses to score; give at least one (hypothesis, reference) pair")


def bleu(hypotheses: list[str], references: list[str]) -> tuple[Any, str]:
  """Corpus BLEU of detokenized text with sacrebleu's defaults (13a tokenization, mixed case),
  and sacrebleu's signature of those settings (to print beside any BLEU we report)."""
  metric = sacrebleu.metrics.BLEU()
  score = metric.corpus_score(hypotheses, [references])
  return score, str(metric.get_signature())


@functools.cache
def _rouge_scorer() -> rouge_scorer.RougeScorer:
  # nltk's Porter stemmer is code, not data: it needs no nltk download.
  return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge_per_example(
  hypotheses: Sequence[str], references: Sequence[str]
) -> dict[str, np.ndarray]:
  """{rouge1, rouge2, rougeL: the F-measure of each hypothesis against its reference, in [0, 1]}.

  rouge-score's tokenizer lowercases and keeps only runs of [a-z0-9] (English only: "U.S." is
  "u s", accented letters are dropped), then Porter-stems tokens longer than 3 characters; an
  empty hypothesis scores 0."""
  _check_pairs(hypotheses, references)
  scorer = _rouge_scorer()
  scores = [scorer.score(ref, hyp) for hyp, ref in zip(hypotheses, references, strict=True)]
  return {name: np.array([s[name].fmeasure for s in scores]) for name in ROUGE_TYPES}


def rouge(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
  """{rouge1, rouge2, rougeL}: the mean over examples of each one's F-measure, x100.

  The mean of per-example F1, as summarisation papers report ROUGE (rouge-score's
  BootstrapAggregator centres on it), not an F1 of counts pooled over the corpus, which weighs
  long texts more."""
  return {
    name: float(f.mean() * 100) for name, f in rouge_per_example(hypotheses, references).items()
  }


def _collapse_whitespace(text: str) -> str:
  return " ".join(text.split())


def short_answer(text: str) -> str:
  """A short answer (a class name) as `exact_match` compares it loosely: lowercased, runs of
  whitespace one space, punctuation stripped at both ends ("Positive." -> "positive"); inner
  punctuation counts."""
  return _collapse_whitespace(text.lower()).strip(string.punctuation + " ")


def exact_match(
  hypotheses: Sequence[str],
  references: Sequence[str],
  normalize: Callable[[str], str] = _collapse_whitespace,
) -> float:
  """The percentage of hypotheses equal to their reference once both are normalized: by default
  runs of whitespace become one space and the ends are stripped, case and punctuation count
  (SQuAD's looser normalisation is `question_answering.normalize_answer`)."""
  _check_pairs(hypotheses, references)
  same = [normalize(h) == normalize(r) for h, r in zip(hypotheses, references, strict=True)]
  return float(np.mean(same) * 100)
