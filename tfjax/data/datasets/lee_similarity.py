"""TFDS builder `lee_similarity`: 1,225 news-document pairs with mean human similarity ratings.

Lee, Pincombe & Welsh (2005) had students rate every pair of 50 short Australian news documents
on a 1-5 scale; gensim ships the documents and the mean ratings as test data, and we read the
two files from the installed `gensim==4.4.0` wheel (`--no-deps`, never imported):

  lee.cor              the 50 documents, one per line, Latin-1 (a "£" is byte 0xA3)
  similarities0-1.txt  a 50 x 50 tab-separated matrix: the mean rating of documents i < j in
                       row i, column j, divided by 5 (so in [0.2, 1]); 1 on the diagonal, 0 below

One example per pair i < j: TEXT_A (document i), TEXT_B (document j), SIMILARITY (the rating, as
written: in [0.2, 1]) and PAIR ([i, j], 0-based lines of lee.cor). A similarity task for GPT-1
(Radford et al. 2018, §3.3: both orders encoded), scored by Pearson / Spearman correlation.
Splits are 70/15/15 from a SHA-256 of the pair: a document appears in every split, a pair in
one (857 / 170 / 198). Mind what that lets through: predicting mean_i + mean_j - mean, each
document's mean rating over its training pairs, reads no text and scores test Pearson 0.353,
Spearman 0.383 (50 documents are too few to split by document). Importing this module
registers the builder.
"""

import pathlib
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from tfjax.data.datasets.builder import OfflineBuilder
from tfjax.data.installed import package_file

PACKAGE = "gensim"
PACKAGE_VERSION = "4.4.0"
DOCUMENTS_FILE = "gensim/test/test_data/lee.cor"
RATINGS_FILE = "gensim/test/test_data/similarities0-1.txt"
NUM_DOCUMENTS = 50
TEXT_A, TEXT_B, SIMILARITY, PAIR = "text_a", "text_b", "similarity", "pair"

_CITATION = """\
@inproceedings{lee2005empirical,
  author    = {Michael D. Lee and Brandon Pincombe and Matthew Welsh},
  title     = {An Empirical Evaluation of Models of Text Document Similarity},
  booktitle = {Proceedings of the 27th Annual Conference of the Cognitive Science Society},
  year      = {2005}
}
"""


def read_documents(path: pathlib.Path | None = None) -> list[str]:
  """The documents of lee.cor, one per line (the last one has no newline)."""
  path = path or package_file(PACKAGE, PACKAGE_VERSION, DOCUMENTS_FILE, "The Lee documents")
  # Not `splitlines`: it also breaks at Latin-1's NEL (0x85) and other separators.
  documents = path.read_bytes().decode("latin-1").rstrip("\n").split("\n")
  if len(documents) != NUM_DOCUMENTS or not all(d.strip() for d in documents):
    raise ValueError(
      f"{path} holds {len(documents)} lines, not {NUM_DOCUMENTS} non-empty documents; "
      f"reinstall {PACKAGE}=={PACKAGE_VERSION}"
    )
  return [d.strip() for d in documents]


def read_ratings(path: pathlib.Path | None = None, n: int = NUM_DOCUMENTS) -> np.ndarray:
  """The n x n rating matrix, checked: ratings in [0, 1] above the diagonal, ones on it, zeros
  below."""
  path = path or package_file(PACKAGE, PACKAGE_VERSION, RATINGS_FILE, "The Lee ratings")
  rows = [line.split("\t") for line in path.read_text(encoding="ascii").splitlines()]
  if len(rows) != n or any(len(row) != n for row in rows):
    shape = f"{len(rows)} rows of {sorted({len(row) for row in rows})} values"
    raise ValueError(f"{path} holds {shape}, not {n} rows of {n}; reinstall the package")
  ratings = np.array(rows, dtype=np.float64)
  upper = ratings[np.triu_indices(n, 1)]
  if not (np.all(np.diag(ratings) == 1) and np.all(np.tril(ratings, -1) == 0)):
    raise ValueError(f"{path} is not upper triangular with a unit diagonal; reinstall the package")
  if not np.all((upper >= 0) & (upper <= 1)):
    raise ValueError(f"{path} has ratings outside [0, 1]; reinstall the package")
  return ratings


def pairs(documents: list[str], ratings: np.ndarray) -> Iterator[tuple[int, int, float]]:
  """(i, j, rating) of each pair i < j, row by row."""
  for i, j in zip(*np.triu_indices(len(documents), 1), strict=True):
    yield int(i), int(j), float(ratings[i, j])


class LeeSimilarity(OfflineBuilder):
  """Pairs of the 50 news documents of Lee et al. (2005) with their mean human similarity
  rating (1-5, divided by 5), from gensim 4.4.0's test data. Splits are 70/15/15 from a
  SHA-256 of the pair."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: 1,225 pairs, 70/15/15 by pair hash."}
  HOMEPAGE = "https://github.com/piskvorky/gensim/tree/develop/gensim/test/test_data"
  CITATION = _CITATION
  LICENSE = "LGPL-2.1 (the gensim distribution); documents and ratings by Lee et al."
  # 15% test: about 180 pairs, enough for a correlation.
  SPLIT_PER_MILLE = (700, 850)

  def _features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict(
      {
        TEXT_A: tfds.features.Text(),
        TEXT_B: tfds.features.Text(),
        SIMILARITY: tfds.features.Scalar(np.float32),
        PAIR: tfds.features.Tensor(shape=(2,), dtype=np.int32),
      }
    )

  def _examples(self, dl_manager: tfds.download.DownloadManager) -> Iterator[tuple[str, str, dict]]:
    del dl_manager  # The data is already on disk, inside an installed package.
    documents = read_documents()
    for i, j, rating in pairs(documents, read_ratings()):
      key = f"{i:02d}-{j:02d}"
      features = {TEXT_A: documents[i], TEXT_B: documents[j], SIMILARITY: rating, PAIR: [i, j]}
      yield self.split_of(key), key, features
