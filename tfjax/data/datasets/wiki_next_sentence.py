"""TFDS builder `wiki_next_sentence`: find a lead's second sentence among four (multiple choice).

Made from the `wiki_vital_articles` leads, for GPT-1's multiple-choice fine-tuning (Radford et
al. 2018, §3.3): the context is a lead's first sentence, the answers its second sentence and the
second sentences of 3 other articles of the same topic and split (same-topic distractors make
the topic no clue). "Uncategorized" articles (no topic) and leads of one sentence are left out.
Each article falls in the split that `WikiVitalArticles.split_of` gives its title, as in
pre-training, so a model pre-trained on the wiki_vital_articles train split has never read a
validation or test article, nor a distractor of one. Distractors and the order of the answers
come from a numpy Generator seeded by a SHA-256 of the title: the same on every machine.
Sentences are cut by `tfjax.data.sentences.split_sentences`. Importing this module registers the
builder.
"""

import collections
import hashlib
from collections.abc import Iterable, Iterator

import numpy as np
import tensorflow_datasets as tfds

from tfjax.data.datasets import wiki_vital_articles
from tfjax.data.datasets.builder import (
  CHOICES,
  CONTEXT,
  LABEL,
  OfflineBuilder,
  multiple_choice_features,
)
from tfjax.data.datasets.wiki_topics import UNCATEGORIZED
from tfjax.data.sentences import split_sentences

NUM_CHOICES = 4  # The true second sentence and 3 distractors.
TITLE = "title"  # The other features: CONTEXT, CHOICES, LABEL (tfjax.data.datasets.builder).

_split_of = wiki_vital_articles.WikiVitalArticles.split_of


def title_rng(title: str) -> np.random.Generator:
  """A Generator seeded by the title's SHA-256: the same draws on every machine and run."""
  return np.random.default_rng(int.from_bytes(hashlib.sha256(title.encode()).digest()[:8], "big"))


def make_examples(articles: Iterable[dict[str, str]]) -> Iterator[tuple[str, str, dict]]:
  """(split, title, features) of each usable article (title, extract, topic), in the given
  order; distractors from its topic and split, in which every pool must hold NUM_CHOICES
  distinct second sentences."""
  leads = []  # (split, topic, title, first sentence, second sentence)
  for a in articles:
    sentences = split_sentences(a["extract"])
    if a["topic"] != UNCATEGORIZED and len(sentences) >= 2:
      leads.append((_split_of(a["title"]), a["topic"], a["title"], *sentences[:2]))
  pools = collections.defaultdict(set)
  for split, topic, _, _, second in leads:
    pools[split, topic].add(second)
  pools = {group: sorted(seconds) for group, seconds in pools.items()}  # independent of order
  for split, topic, title, first, second in leads:
    others = [s for s in pools[split, topic] if s != second]
    if len(others) < NUM_CHOICES - 1:
      raise ValueError(
        f"topic {topic!r} has {len(others) + 1} distinct second sentences in split '{split}', "
        f"fewer than the {NUM_CHOICES} answers of an example; use a larger corpus"
      )
    rng = title_rng(title)
    picked = rng.choice(len(others), NUM_CHOICES - 1, replace=False)
    choices = [second, *(others[i] for i in picked)]
    order = rng.permutation(NUM_CHOICES)
    features = {
      TITLE: title,
      CONTEXT: first,
      CHOICES: [choices[i] for i in order],
      LABEL: int(np.flatnonzero(order == 0)[0]),  # where the true answer went
    }
    yield split, title, features


class WikiNextSentence(OfflineBuilder):
  """The first sentence of a Wikipedia vital article's lead, and four candidates for its second
  sentence: the true one and the second sentences of 3 other articles of the same topic and
  split. Splits are wiki_vital_articles': 90/5/5 per article, from a SHA-256 of the title."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: 4 answers, same-topic same-split distractors."}
  HOMEPAGE = wiki_vital_articles.WikiVitalArticles.HOMEPAGE
  CITATION = wiki_vital_articles.WikiVitalArticles.CITATION
  LICENSE = wiki_vital_articles.WikiVitalArticles.LICENSE
  SPLIT_PER_MILLE = wiki_vital_articles.WikiVitalArticles.SPLIT_PER_MILLE  # keyed on the title too

  def _features(self) -> tfds.features.FeaturesDict:
    return multiple_choice_features(**{TITLE: tfds.features.Text()})

  def _examples(self, dl_manager: tfds.download.DownloadManager) -> Iterator[tuple[str, str, dict]]:
    del dl_manager  # The data is already on disk, inside an installed package.
    yield from make_examples(wiki_vital_articles.read_articles())
