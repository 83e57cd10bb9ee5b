"""Two tiny TFDS datasets for the fine-tuning tests, registered on import: `tiny_text_pairs`
(premise / hypothesis with a class and a float score) and `tiny_choices` (a context and 3
answers, the right one's index), of words the tiny GPT and BERT tokenizers know; and the config
overrides that read them."""

import numpy as np
import tensorflow_datasets as tfds

from tests.tiny_datasets import tiny_builder

WORDS = "the river city of water and stone was built near old hills by people who came".split()
SPLITS = (("train", 16), ("validation", 8), ("test", 8))


def _text(rng: np.random.Generator) -> str:
  return " ".join(rng.choice(WORDS, rng.integers(2, 7)))


def _pairs(n: int, seed: int) -> list[dict]:
  rng = np.random.default_rng(seed)
  return [
    {"premise": _text(rng), "hypothesis": _text(rng), "label": int(rng.integers(2)),
     "score": float(rng.random())}
    for _ in range(n)
  ]  # fmt: skip


def _choices(n: int, seed: int) -> list[dict]:
  rng = np.random.default_rng(seed)
  return [
    {"context": _text(rng), "choices": [_text(rng) for _ in range(3)],
     "label": int(rng.integers(3))}
    for _ in range(n)
  ]  # fmt: skip


tiny_builder(
  "tiny_text_pairs",
  {
    "premise": tfds.features.Text(),
    "hypothesis": tfds.features.Text(),
    "label": tfds.features.ClassLabel(names=["entailment", "non-entailment"]),
    "score": tfds.features.Scalar(np.float32),
  },
  {split: _pairs(n, i) for i, (split, n) in enumerate(SPLITS)},
)
tiny_builder(
  "tiny_choices",
  {
    "context": tfds.features.Text(),
    "choices": tfds.features.Sequence(tfds.features.Text()),
    "label": tfds.features.Scalar(np.int64),
  },
  {split: _choices(n, i) for i, (split, n) in enumerate(SPLITS)},
)

_WHOLE_SPLITS = {"data.train_split": "train", "data.eval_split": "validation",
                 "data.test_split": "test"}  # fmt: skip
PAIRS = {"data.name": "tiny_text_pairs", "data.text_field": "premise",
         "data.text_pair_field": "hypothesis", **_WHOLE_SPLITS}  # fmt: skip
CHOICES = {"data.name": "tiny_choices", "data.text_field": "context",
           "data.choices_field": "choices", "data.num_choices": 3, **_WHOLE_SPLITS}  # fmt: skip
