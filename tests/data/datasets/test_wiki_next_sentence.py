"""Tests of the wiki_next_sentence TFDS builder: the example maker on invented articles, the
builder on the real wiki_vital_articles corpus (conftest's wiki_builder)."""

import collections

import pytest
import tensorflow_datasets as tfds

from tfjax.data.datasets import wiki_next_sentence
from tfjax.data.datasets.wiki_vital_articles import WikiVitalArticles
from tfjax.data.sentences import split_sentences

SPLITS = ("train", "validation", "test")


def invented_articles() -> list[dict[str, str]]:
  """5 articles of each of two topics in each split (titles picked by their split), then one
  of one sentence and one uncategorized, which make no example."""
  articles, numbers = [], iter(range(10_000))
  for topic in ("Arts", "History"):
    for split in SPLITS:
      for _ in range(5):
        i = next(i for i in numbers if WikiVitalArticles.split_of(f"Thing {i}") == split)
        extract = f"Thing {i} is a thing. It is number {i}. It has a third sentence."
        articles.append({"title": f"Thing {i}", "extract": extract, "topic": topic})
  articles.append({"title": "Short", "extract": "Short is one sentence.", "topic": "Arts"})
  articles.append({"title": "Loose", "extract": "Loose is. Here it is.", "topic": "Uncategorized"})
  return articles


def test_examples_hide_the_second_sentence_among_same_topic_same_split_ones():
  articles = invented_articles()
  by_second = {split_sentences(a["extract"])[1]: a for a in articles[:30]}
  examples = list(wiki_next_sentence.make_examples(articles))
  assert [title for _, title, _ in examples] == [a["title"] for a in articles[:30]]
  for split, title, ex in examples:
    article = next(a for a in articles if a["title"] == title)
    assert split == WikiVitalArticles.split_of(title)
    assert ex["context"] == f"{title} is a thing."
    assert ex["choices"][ex["label"]] == f"It is number {title.split()[1]}."
    assert len(set(ex["choices"])) == wiki_next_sentence.NUM_CHOICES == 4
    for choice in ex["choices"]:
      source = by_second[choice]
      assert source["topic"] == article["topic"]
      assert WikiVitalArticles.split_of(source["title"]) == split


def test_examples_do_not_depend_on_the_article_order():
  articles = invented_articles()
  forward = {title: ex for _, title, ex in wiki_next_sentence.make_examples(articles)}
  backward = {title: ex for _, title, ex in wiki_next_sentence.make_examples(articles[::-1])}
  assert forward == backward


def test_true_answers_are_spread_over_the_positions():
  labels = [ex["label"] for _, _, ex in wiki_next_sentence.make_examples(invented_articles())]
  assert set(labels) == {0, 1, 2, 3}


def test_a_topic_too_small_for_four_answers_is_an_error():
  articles = invented_articles()[:3]  # 3 of a topic in a split
  with pytest.raises(ValueError, match=r"fewer than the 4 answers of an example"):
    list(wiki_next_sentence.make_examples(articles))


@pytest.fixture(scope="module")
def next_builder(tmp_path_factory) -> tfds.core.DatasetBuilder:
  builder = tfds.builder("wiki_next_sentence", data_dir=str(tmp_path_factory.mktemp("tfds")))
  builder.download_and_prepare()
  return builder


@pytest.fixture(scope="module")
def next_examples(next_builder) -> dict[str, list[dict]]:
  out = {}
  for split in SPLITS:
    source = next_builder.as_data_source(split=split)
    out[split] = [
      {
        "title": ex["title"].decode("utf-8"),
        "context": ex["context"].decode("utf-8"),
        "choices": [c.decode("utf-8") for c in ex["choices"]],
        "label": int(ex["label"]),
      }
      for ex in (source[i] for i in range(len(source)))
    ]
  return out


def test_real_examples_are_the_leads_first_and_second_sentences(next_examples, source_articles):
  for split in SPLITS:
    for ex in next_examples[split]:
      sentences = split_sentences(source_articles[ex["title"]]["extract"])
      assert ex["context"] == sentences[0]
      assert ex["choices"][ex["label"]] == sentences[1]
      assert len(set(ex["choices"])) == 4


def test_each_article_is_in_its_wiki_vital_articles_split(next_examples, wiki_builder):
  # A model pre-trained on wiki_vital_articles' train split must not have read an eval article.
  for split in SPLITS:
    source = wiki_builder.as_data_source(split=split)
    lm_titles = {source[i]["title"].decode("utf-8") for i in range(len(source))}
    assert {ex["title"] for ex in next_examples[split]} <= lm_titles


def test_split_sizes_and_label_spread_are_stable(next_examples, next_builder):
  sizes = {split: next_builder.info.splits[split].num_examples for split in SPLITS}
  assert sizes == {"train": 7591, "validation": 451, "test": 393}  # of 9,033 categorized
  labels = collections.Counter(ex["label"] for split in SPLITS for ex in next_examples[split])
  assert all(abs(labels[k] / sum(sizes.values()) - 0.25) < 0.02 for k in range(4))
