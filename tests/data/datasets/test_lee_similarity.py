"""Tests of the lee_similarity TFDS builder: the real gensim test files (33 KB), read here
independently as gensim's own test_lee.py does (np.loadtxt, upper triangle), and malformed
small files for the checks."""

import importlib.metadata

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfjax.data.datasets import lee_similarity

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def lee_builder(tmp_path_factory) -> tfds.core.DatasetBuilder:
  builder = tfds.builder("lee_similarity", data_dir=str(tmp_path_factory.mktemp("tfds")))
  builder.download_and_prepare()
  return builder


@pytest.fixture(scope="module")
def lee_examples(lee_builder) -> dict[str, list[dict]]:
  out = {}
  for split in SPLITS:
    source = lee_builder.as_data_source(split=split)
    out[split] = [source[i] for i in range(len(source))]
  return out


def gensim_file(name: str) -> str:
  (path,) = [f.locate() for f in importlib.metadata.files("gensim") if f.name == name]
  return path


def test_examples_are_the_upper_triangle_of_the_rating_matrix(lee_examples):
  ratings = np.loadtxt(gensim_file("similarities0-1.txt"))
  with open(gensim_file("lee.cor"), encoding="latin-1", newline="") as f:
    documents = [line.strip() for line in f.read().split("\n")]
  built = {}
  for split in SPLITS:
    for ex in lee_examples[split]:
      i, j = (int(k) for k in ex["pair"])
      built[i, j] = ex
      assert ex["text_a"].decode("utf-8") == documents[i]
      assert ex["text_b"].decode("utf-8") == documents[j]
      np.testing.assert_allclose(ex["similarity"], ratings[i, j], rtol=1e-7)
  assert sorted(built) == list(zip(*(a.tolist() for a in np.triu_indices(50, 1)), strict=True))
  assert len(built) == 1225 == 50 * 49 // 2


def test_ratings_lie_in_fifths_of_mean_1_to_5_scores(lee_examples):
  similarity = np.array([ex["similarity"] for split in SPLITS for ex in lee_examples[split]])
  assert similarity.min() == pytest.approx(0.2) and similarity.max() == pytest.approx(1.0)
  assert similarity.mean() == pytest.approx(0.32651, abs=1e-5)


def test_splits_are_disjoint_and_their_sizes_are_stable(lee_examples, lee_builder):
  pairs = {split: {tuple(ex["pair"].tolist()) for ex in lee_examples[split]} for split in SPLITS}
  assert not pairs["train"] & pairs["validation"] and not pairs["train"] & pairs["test"]
  assert not pairs["validation"] & pairs["test"]
  sizes = {split: lee_builder.info.splits[split].num_examples for split in SPLITS}
  assert sizes == {"train": 857, "validation": 170, "test": 198}  # about 70/15/15
  split_of = lee_similarity.LeeSimilarity.split_of
  for split in SPLITS:
    assert {split_of(f"{i:02d}-{j:02d}") for i, j in pairs[split]} == {split}


def write_matrix(path, matrix) -> None:
  path.write_text("\n".join("\t".join(f"{v:g}" for v in row) for row in matrix) + "\n")


@pytest.mark.parametrize(
  "matrix, problem",
  [
    ([[1, 0.5], [0, 1]], "not 3 rows of 3"),
    ([[1, 0.5, 0.3], [0.5, 1, 0.4], [0, 0, 1]], "not upper triangular"),
    ([[1, 0.5, 1.3], [0, 1, 0.4], [0, 0, 1]], r"outside \[0, 1\]"),
  ],
)
def test_a_malformed_rating_matrix_is_an_error(tmp_path, matrix, problem):
  write_matrix(tmp_path / "ratings.txt", matrix)
  with pytest.raises(ValueError, match=problem):
    lee_similarity.read_ratings(tmp_path / "ratings.txt", n=3)


def test_read_ratings_reads_the_real_matrix_as_written():
  # The real file's first row begins 1, 0.3, 0.24.
  ratings = lee_similarity.read_ratings()
  assert ratings.shape == (50, 50) and ratings[0, :3].tolist() == [1, 0.3, 0.24]


def test_documents_are_latin1_lines_and_a_wrong_count_is_an_error(tmp_path):
  documents = lee_similarity.read_documents()
  assert len(documents) == 50 and sum("£" in d for d in documents) >= 1
  (tmp_path / "lee.cor").write_bytes(b"one\ntwo\n")
  with pytest.raises(ValueError, match=r"holds 2 lines, not 50 non-empty documents"):
    lee_similarity.read_documents(tmp_path / "lee.cor")


def test_missing_package_says_how_to_install(monkeypatch):
  def not_installed(name):
    raise importlib.metadata.PackageNotFoundError(name)

  monkeypatch.setattr(importlib.metadata, "files", not_installed)
  with pytest.raises(FileNotFoundError, match=r"pip install --no-deps gensim==4\.4\.0"):
    lee_similarity.read_documents()
