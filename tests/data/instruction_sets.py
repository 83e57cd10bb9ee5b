"""Three tiny TFDS datasets shaped like the instruction mixture's sources, registered on import
(`tiny_described`: extract -> description, one description empty; `tiny_reviews`: a text and a
ClassLabel rotten/fresh; `tiny_en_de`: a Translation en/de), the tasks that read them
(`TINY_TASKS`, short templates for 32-token rows) and `use_tiny_tasks`, which puts them in
`instructions.TASKS` for a test."""

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests.tiny_datasets import tiny_builder
from tfjax.data import instructions
from tfjax.data.instructions import InstructionTask

WORDS = "the river city of water and stone was built near old hills by people who came".split()
GERMAN = {"the": "der", "river": "fluss", "city": "stadt", "of": "von", "water": "wasser",
          "and": "und", "stone": "stein", "was": "war", "built": "gebaut", "near": "nahe",
          "old": "alten", "hills": "hügeln", "by": "von", "people": "leuten", "who": "die",
          "came": "kamen"}  # fmt: skip
SIZES = {"train": 12, "validation": 4, "test": 4}


def _text(rng: np.random.Generator, low: int = 2, high: int = 7) -> str:
  return " ".join(rng.choice(WORDS, rng.integers(low, high)))


def described(split: str) -> list[dict]:
  rng = np.random.default_rng([0, list(SIZES).index(split)])
  examples = [{"extract": _text(rng, 3, 9), "description": _text(rng, 1, 3)}
              for _ in range(SIZES[split])]  # fmt: skip
  if split == "train":
    examples[0]["description"] = ""  # dropped (counted)
  return examples


def reviews(split: str) -> list[dict]:
  rng = np.random.default_rng([1, list(SIZES).index(split)])
  return [{"text": _text(rng), "label": ("rotten", "fresh")[int(rng.integers(2))]}
          for _ in range(SIZES[split])]  # fmt: skip


def en_de(split: str) -> list[dict]:
  rng = np.random.default_rng([2, list(SIZES).index(split)])
  english = [_text(rng) for _ in range(SIZES[split])]
  return [{"en": e, "de": " ".join(GERMAN[w] for w in e.split())} for e in english]


tiny_builder(
  "tiny_described",
  {"extract": tfds.features.Text(), "description": tfds.features.Text()},
  {split: described(split) for split in SIZES},
)
tiny_builder(
  "tiny_reviews",
  {"text": tfds.features.Text(), "label": tfds.features.ClassLabel(names=["rotten", "fresh"])},
  {split: reviews(split) for split in SIZES},
)
tiny_builder(
  "tiny_en_de",
  tfds.features.Translation(languages=("en", "de")),
  {split: en_de(split) for split in SIZES},
)

TINY_TASKS = {
  "tiny_summarise": InstructionTask(
    dataset="tiny_described",
    input_field="extract",
    answer_field="description",
    metric="rouge",
    templates=("sum: {text}", "{text} in short", "say briefly: {text}", "{text} held out"),
    max_input_words=6,
  ),
  "tiny_sentiment": InstructionTask(
    dataset="tiny_reviews",
    input_field="text",
    answer_field="label",
    metric="exact_match",
    templates=("good or bad? {text}", "{text} liked?", "review {text} verdict"),
    answers={"fresh": "positive", "rotten": "negative"},
  ),
  "tiny_labels": InstructionTask(  # the same reviews, their class names as answers
    dataset="tiny_reviews",
    input_field="text",
    answer_field="label",
    metric="exact_match",
    templates=("label: {text}", "{text} label?"),
  ),
  "tiny_translate": InstructionTask(
    dataset="tiny_en_de",
    input_field="en",
    answer_field="de",
    metric="bleu",
    templates=("german: {text}", "{text} in german", "say in german {text}"),
  ),
}


@contextlib.contextmanager
def use_tiny_tasks() -> Iterator[None]:
  """`instructions.TASKS` with TINY_TASKS added, for the block's duration."""
  with pytest.MonkeyPatch.context() as patch:
    for name, task in TINY_TASKS.items():
      patch.setitem(instructions.TASKS, name, task)
    yield
