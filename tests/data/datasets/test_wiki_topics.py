"""Tests of the wiki_topics TFDS builder against the package's JSON and wiki_vital_articles."""

import collections

import pytest
import tensorflow_datasets as tfds

from tfjax.data.datasets import wiki_topics

# The topic counts of the source package, counted independently of this code, less
# "Uncategorized" (1,000 articles).
SOURCE_TOPIC_COUNTS = {
  "People": 1828,
  "Biology and health sciences": 1358,
  "Geography": 1109,
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


@pytest.fixture(scope="module")
def topics_builder(tmp_path_factory) -> tfds.core.DatasetBuilder:
  builder = tfds.builder("wiki_topics", data_dir=str(tmp_path_factory.mktemp("tfds")))
  builder.download_and_prepare()
  return builder


@pytest.fixture(scope="module")
def topics_examples(topics_builder) -> dict[str, list[dict]]:
  """Each split's examples, decoded: {"title", "text", "label" (a topic name)}."""
  label = topics_builder.info.features["label"]
  out = {}
  for split in SPLITS:
    source = topics_builder.as_data_source(split=split)
    out[split] = [
      {
        "title": ex["title"].decode("utf-8"),
        "text": ex["text"].decode("utf-8"),
        "label": label.int2str(int(ex["label"])),
      }
      for ex in (source[i] for i in range(len(source)))
    ]
  return out


def test_labels_are_the_11_topics_without_uncategorized(topics_builder):
  label = topics_builder.info.features["label"]
  assert label.num_classes == 11
  assert set(label.names) == set(SOURCE_TOPIC_COUNTS)
  assert tuple(label.names) == wiki_topics.TOPICS


def test_topic_counts_are_the_source_counts_without_uncategorized(topics_examples):
  counts = collections.Counter(ex["label"] for split in SPLITS for ex in topics_examples[split])
  assert counts == SOURCE_TOPIC_COUNTS
  assert sum(counts.values()) == 9_033 == 10_033 - 1_000


def test_examples_equal_the_source_json(topics_examples, source_articles):
  expected = {t: a for t, a in source_articles.items() if a["topic"] != "Uncategorized"}
  seen = set()
  for split in SPLITS:
    for ex in topics_examples[split]:
      article = expected[ex["title"]]
      assert ex["text"] == article["extract"]
      assert ex["label"] == article["topic"]
      seen.add(ex["title"])
  assert seen == set(expected)


def test_each_article_is_in_the_same_split_as_in_wiki_vital_articles(topics_examples, wiki_builder):
  # A model pre-trained on wiki_vital_articles' train split must not have read an eval article.
  for split in SPLITS:
    source = wiki_builder.as_data_source(split=split)
    lm_titles = {source[i]["title"].decode("utf-8") for i in range(len(source))}
    assert {ex["title"] for ex in topics_examples[split]} <= lm_titles


def test_splits_are_disjoint_and_their_sizes_are_stable(topics_examples, topics_builder):
  titles = {split: {ex["title"] for ex in topics_examples[split]} for split in SPLITS}
  assert not titles["train"] & titles["validation"]
  assert not titles["train"] & titles["test"]
  assert not titles["validation"] & titles["test"]
  sizes = {split: topics_builder.info.splits[split].num_examples for split in SPLITS}
  assert sizes == {"train": 8133, "validation": 472, "test": 428}
