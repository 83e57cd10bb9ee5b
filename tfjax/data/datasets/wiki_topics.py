"""TFDS builder `wiki_topics`: Wikipedia vital-articles lead extracts labelled with their topic.

The same 10,033 articles as `wiki_vital_articles` (read from the same offline PyPI package), less
the 1,000 "Uncategorized" ones, which name no topic: 9,033 examples in 11 classes. Each article
falls in the split that `wiki_vital_articles.split_of` gives its title, so a model pre-trained on
the `wiki_vital_articles` train split has never read a validation or test article of this
dataset. Importing this module registers the builder.
"""

import json
from collections.abc import Iterator
from typing import Any

import tensorflow_datasets as tfds
from etils import epath

from tfjax.data.datasets import wiki_vital_articles

UNCATEGORIZED = "Uncategorized"
# The vital-articles topics by decreasing size, without "Uncategorized": label i is TOPICS[i].
TOPICS = tuple(t for t in wiki_vital_articles.TOPICS if t != UNCATEGORIZED)


class WikiTopics(tfds.core.GeneratorBasedBuilder):
  """Topic classification of English Wikipedia vital articles (11 classes)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {
    "1.0.0": "Initial release: 9,033 articles, 11 topics, splits of wiki_vital_articles."
  }
  code_path = epath.Path(__file__)  # See WikiVitalArticles.code_path.

  def __init__(self, *, file_format: str | None = None, **kwargs: Any):
    # array_record by default: readable by `tfds.data_source` without TensorFlow.
    super().__init__(file_format=file_format or "array_record", **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=(
        "Lead sections of the English Wikipedia vital articles, labelled with their vital-"
        "articles topic (11 classes; 'Uncategorized' articles left out). Splits are those of "
        "wiki_vital_articles: 90/5/5 per article, from a SHA-256 of the title."
      ),
      features=tfds.features.FeaturesDict(
        {
          "title": tfds.features.Text(),
          "text": tfds.features.Text(),
          "label": tfds.features.ClassLabel(names=TOPICS),
        }
      ),
      supervised_keys=("text", "label"),
      homepage="https://en.wikipedia.org/wiki/Wikipedia:Vital_articles",
      citation=wiki_vital_articles.CITATION,
      license="CC BY-SA 4.0 (Wikipedia text)",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
    del dl_manager  # The data is already on disk, inside an installed package.
    with wiki_vital_articles.source_path().open(encoding="utf-8") as f:
      articles = [a for a in json.load(f).values() if a["topic"] != UNCATEGORIZED]
    return {
      split: self._generate_examples(
        [a for a in articles if wiki_vital_articles.split_of(a["title"]) == split]
      )
      for split in ("train", "validation", "test")
    }

  def _generate_examples(self, articles: list[dict[str, str]]) -> Iterator[tuple[str, dict]]:
    for a in articles:
      yield a["title"], {"title": a["title"], "text": a["extract"], "label": a["topic"]}
