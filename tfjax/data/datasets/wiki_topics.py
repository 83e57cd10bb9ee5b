"""TFDS builder `wiki_topics`: Wikipedia vital-articles lead extracts labelled with their topic.

The same 10,033 articles as `wiki_vital_articles` (read from the same offline PyPI package), less
the 1,000 "Uncategorized" ones, which name no topic: 9,033 examples in 11 classes. Each article
falls in the split that `WikiVitalArticles.split_of` gives its title, so a model pre-trained on
the `wiki_vital_articles` train split has never read a validation or test article of this
dataset. Importing this module registers the builder.
"""

from collections.abc import Iterator

import tensorflow_datasets as tfds

from tfjax.data.datasets import wiki_vital_articles
from tfjax.data.datasets.builder import OfflineBuilder

UNCATEGORIZED = "Uncategorized"
# The vital-articles topics by decreasing size, without "Uncategorized": label i is TOPICS[i].
TOPICS = tuple(t for t in wiki_vital_articles.TOPICS if t != UNCATEGORIZED)


class WikiTopics(OfflineBuilder):
  """Lead sections of the English Wikipedia vital articles, labelled with their vital-articles
  topic (11 classes; 'Uncategorized' articles left out). Splits are those of
  wiki_vital_articles: 90/5/5 per article, from a SHA-256 of the title."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {
    "1.0.0": "Initial release: 9,033 articles, 11 topics, splits of wiki_vital_articles."
  }
  SUPERVISED_KEYS = ("text", "label")
  HOMEPAGE = wiki_vital_articles.WikiVitalArticles.HOMEPAGE
  CITATION = wiki_vital_articles.WikiVitalArticles.CITATION
  LICENSE = wiki_vital_articles.WikiVitalArticles.LICENSE
  SPLIT_PER_MILLE = wiki_vital_articles.WikiVitalArticles.SPLIT_PER_MILLE  # keyed on the title too

  def _features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict(
      {
        "title": tfds.features.Text(),
        "text": tfds.features.Text(),
        "label": tfds.features.ClassLabel(names=TOPICS),
      }
    )

  def _examples(self, dl_manager: tfds.download.DownloadManager) -> Iterator[tuple[str, str, dict]]:
    del dl_manager  # The data is already on disk, inside an installed package.
    for a in wiki_vital_articles.read_articles():
      if a["topic"] != UNCATEGORIZED:
        features = {"title": a["title"], "text": a["extract"], "label": a["topic"]}
        yield self.split_of(a["title"]), a["title"], features
