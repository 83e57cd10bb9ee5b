"""BLEU, ROUGE and exact match against scores counted by hand on tiny strings.

No token below is longer than 3 characters unless a comment gives its Porter stem (rouge-score
stems only longer tokens), so each count can be checked by eye.
"""

import pytest

from tfjax.tasks import text_metrics, translation

REF = "the cat sat on the mat"  # 6 words


def f1(precision: float, recall: float) -> float:
  return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


# (hypothesis, reference, {rouge1, rouge2, rougeL} F-measures counted by hand)
HAND_COUNTED = [
  # Unigrams: hyp the cat lay on a mat; matches the (ref has 2, hyp 1: clipped to 1), cat, on,
  # mat = 4 of 6 each side. Bigrams: hyp the-cat cat-lay lay-on on-a a-mat, ref the-cat cat-sat
  # sat-on on-the the-mat: 1 of 5 each side. LCS: the cat on mat = 4 of 6 each side.
  ("the cat lay on a mat", REF, {"rouge1": 4 / 6, "rouge2": 1 / 5, "rougeL": 4 / 6}),
  # All 4 unigrams match (police -> polic, arrested -> arrest on both sides). Bigrams: only
  # the-man of 3 each side. LCS: "the man" (arrested comes after man here, before it in the ref;
  # police comes first in the ref, last here) = 2 of 4 each side.
  (
    "the man arrested police",
    "police arrested the man",
    {"rouge1": 1.0, "rouge2": 1 / 3, "rougeL": 0.5},
  ),
  # Unigrams: 2 of 2 (P = 1), of 6 (R = 1/3). Bigrams: the-cat, 1 of 1 (P = 1), of 5 (R = 1/5).
  # LCS: 2, as unigrams.
  ("the cat", REF, {"rouge1": f1(1, 1 / 3), "rouge2": f1(1, 1 / 5), "rougeL": f1(1, 1 / 3)}),
]


@pytest.mark.parametrize("hypothesis, reference, expected", HAND_COUNTED)
def test_rouge_of_one_pair_matches_the_hand_counts(hypothesis, reference, expected):
  got = text_metrics.rouge_per_example([hypothesis], [reference])
  assert set(got) == {"rouge1", "rouge2", "rougeL"}
  for name, value in expected.items():
    assert got[name][0] == pytest.approx(value), name


def test_corpus_rouge_is_the_mean_of_per_example_f1_times_100():
  hypotheses, references, expected = zip(*HAND_COUNTED, strict=True)
  got = text_metrics.rouge(list(hypotheses), list(references))
  mean = {name: 100 * sum(e[name] for e in expected) / 3 for name in expected[0]}
  assert got == pytest.approx(mean)
  # Pooled counts would give another rouge1: 10 matches of 12 hypothesis and 16 reference words.
  assert got["rouge1"] != pytest.approx(100 * f1(10 / 12, 10 / 16))


def test_rouge_stems_lowercases_and_keeps_only_ascii_letters_and_digits():
  # cats -> cat, running -> run, runs -> run ("cat" has 3 letters: not stemmed).
  assert text_metrics.rouge(["cat runs"], ["cats running"])["rouge1"] == pytest.approx(100)
  # "U.S." -> u s; "economy" -> economi on both sides.
  assert text_metrics.rouge(["the u s economy"], ["The U.S. Economy!"]) == pytest.approx(
    {"rouge1": 100, "rouge2": 100, "rougeL": 100}
  )
  # Nothing shared: 0, and an empty hypothesis is 0 too.
  assert text_metrics.rouge(["dog", ""], ["cat", "cat"]) == {"rouge1": 0, "rouge2": 0, "rougeL": 0}


def test_exact_match_collapses_whitespace_and_keeps_case():
  hypotheses = [" the  cat\n", "The cat", "a dog"]
  references = ["the cat", "the cat", "a dog."]
  assert text_metrics.exact_match(hypotheses, references) == pytest.approx(100 / 3)
  lowered = text_metrics.exact_match(hypotheses, references, normalize=lambda t: t.lower().strip())
  assert lowered == pytest.approx(100 / 3)  # " the  cat\n" keeps its double space
  assert text_metrics.exact_match(["a dog"], ["a dog"]) == 100


def test_bleu_matches_the_hand_computed_geometric_mean():
  # Hyp "the cat sat on the mat" against "the cat sat on a mat": n-gram precisions 5/6, 3/5,
  # 2/4, 1/3 (the-cat-sat-on is the only 4-gram shared), equal lengths (brevity penalty 1):
  # BLEU = (5/6 * 3/5 * 2/4 * 1/3) ** (1/4) = (1/12) ** (1/4).
  score, signature = text_metrics.bleu([REF], ["the cat sat on a mat"])
  assert score.score == pytest.approx(100 * (1 / 12) ** 0.25)
  assert signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|")
  assert translation.bleu is text_metrics.bleu  # the translation task reports this BLEU


@pytest.mark.parametrize("metric", [text_metrics.rouge, text_metrics.exact_match])
def test_mismatched_or_empty_inputs_are_one_line_naming_the_fix(metric):
  with pytest.raises(ValueError, match=r"^got 2 hypotheses and 1 references; give one hypothesis"):
    metric(["a", "b"], ["a"])
  with pytest.raises(ValueError, match=r"^no hypotheses to score"):
    metric([], [])
