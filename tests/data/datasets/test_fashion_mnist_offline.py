"""Tests of the fashion_mnist_offline TFDS builder: the IDX parser on small synthetic files, the
builder on tiny fake files from each source (installed dir, manual dir, .deb by apt-get), and
once on the real Debian files (conftest's fashion_mnist_data_dir: skipped where apt-get cannot
fetch them; 1 s here, 4 s to prepare, 3 s to read).

Every test moves INSTALLED_DIR, so that a machine with the package installed still tests the
source it means to (the real data dir is prepared before).
"""

import gzip
import os
import struct

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests.data.datasets.fake_debs import apt_calls, fake_apt_get, write_deb
from tfjax.data.datasets import fashion_mnist_offline as fm


def write_idx(values: np.ndarray, magic: int | None = None, compress: bool = True) -> bytes:
  """An IDX file: big-endian magic (0x08 = uint8, then the number of dimensions), the sizes,
  then the bytes (LeCun et al.'s MNIST page, "FILE FORMATS FOR THE MNIST DATABASE")."""
  magic = 0x0800 + values.ndim if magic is None else magic
  raw = struct.pack(f">I{values.ndim}I", magic, *values.shape) + values.astype(">u1").tobytes()
  return gzip.compress(raw) if compress else raw


def fake_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (n, 28, 28), np.uint8), rng.integers(0, 10, n).astype(np.uint8)


TRAIN, TEST = fake_split(7, 0), fake_split(3, 1)


def fake_files() -> dict[str, bytes]:
  files = {}
  for (images, labels), (images_name, labels_name) in zip(
    (TRAIN, TEST), fm.FILES.values(), strict=True
  ):
    files[images_name], files[labels_name] = write_idx(images), write_idx(labels)
  return files


def put_files(directory, files=None) -> None:
  directory.mkdir(parents=True, exist_ok=True)
  for name, content in (files or fake_files()).items():
    (directory / name).write_bytes(content)


@pytest.fixture(autouse=True)
def no_installed_dir(tmp_path, monkeypatch):
  monkeypatch.setattr(fm, "INSTALLED_DIR", str(tmp_path / "not_installed"))


@pytest.fixture
def failing_apt_get(tmp_path, monkeypatch):
  """An apt-get on PATH that fails (and logs its calls): the builder must not need it."""
  fake = tmp_path / "failing_apt"
  fake_apt_get(fake, tmp_path, exit_code=100)
  monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
  return fake


def build(data_dir, manual_dir=None) -> tfds.core.DatasetBuilder:
  builder = tfds.builder("fashion_mnist_offline", data_dir=str(data_dir))
  config = tfds.download.DownloadConfig(manual_dir=str(manual_dir) if manual_dir else None)
  builder.download_and_prepare(download_config=config)
  return builder


def read_split(builder, split) -> tuple[np.ndarray, np.ndarray]:
  source = builder.as_data_source(split=split)
  examples = source.__getitems__(list(range(len(source))))  # one read, not one per example
  return np.stack([ex["image"] for ex in examples]), np.array([ex["label"] for ex in examples])


def assert_fake_splits(builder) -> None:
  assert set(builder.info.splits.keys()) == {"train", "test"}  # No validation split.
  for split, (images, labels) in (("train", TRAIN), ("test", TEST)):
    got_images, got_labels = read_split(builder, split)
    assert got_images.dtype == np.uint8 and got_images.shape == (len(labels), 28, 28, 1)
    np.testing.assert_array_equal(got_images[..., 0], images)  # In file order.
    np.testing.assert_array_equal(got_labels, labels)


# -- the IDX parser ------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False])
def test_parse_idx_reads_images_and_labels(compress):
  images, labels = TRAIN
  parsed = fm.parse_idx(write_idx(images, compress=compress), "imgs", fm.IMAGES_MAGIC)
  assert parsed.dtype == np.uint8
  np.testing.assert_array_equal(parsed, images)
  np.testing.assert_array_equal(fm.parse_idx(write_idx(labels), "lbls", fm.LABELS_MAGIC), labels)
  assert (fm.IMAGES_MAGIC, fm.LABELS_MAGIC) == (2051, 2049)


def test_parse_idx_errors_name_the_file():
  images, labels = TRAIN
  with pytest.raises(ValueError, match=r"^t-labels has magic number 2051, not 2049 \("):
    fm.parse_idx(write_idx(images), "t-labels", fm.LABELS_MAGIC)
  truncated = write_idx(images, compress=False)[:-5]
  with pytest.raises(ValueError, match=r"^imgs holds 5483 bytes .* 7x28x28; the file is truncated"):
    fm.parse_idx(truncated, "imgs", fm.IMAGES_MAGIC)
  with pytest.raises(ValueError, match=r"^imgs is not a readable gzip file"):
    fm.parse_idx(write_idx(images)[:-9], "imgs", fm.IMAGES_MAGIC)
  with pytest.raises(ValueError, match=r"^empty has magic number None"):
    fm.parse_idx(b"", "empty", fm.IMAGES_MAGIC)


def test_read_split_checks_counts_size_and_labels():
  images, labels = TRAIN
  names = ("i.gz", "l.gz")
  got_images, got_labels = fm.read_split(write_idx(images), write_idx(labels), names)
  assert got_images.shape == (7, 28, 28, 1) and got_labels.tolist() == labels.tolist()
  with pytest.raises(ValueError, match=r"i.gz holds 7 images but l.gz 6 labels"):
    fm.read_split(write_idx(images), write_idx(labels[:6]), names)
  with pytest.raises(ValueError, match=r"i.gz holds images of 27x28 pixels, not 28x28"):
    fm.read_split(write_idx(images[:, :27]), write_idx(labels), names)
  with pytest.raises(ValueError, match=r"l.gz holds label 10, not in \[0, 10\)"):
    fm.read_split(write_idx(images), write_idx(labels + 10 - labels.max()), names)


# -- the builder on tiny fake files ----------------------------------------------------------


def test_builder_reads_the_manual_dir_in_file_order(tmp_path, failing_apt_get):
  put_files(tmp_path / "manual")
  builder = build(tmp_path / "tfds", tmp_path / "manual")
  assert_fake_splits(builder)
  assert apt_calls(failing_apt_get) == []
  features = builder.info.features
  assert isinstance(features["image"], tfds.features.Tensor)
  assert features["image"].shape == (28, 28, 1) and features["image"].np_dtype == np.uint8
  assert features["label"].names == list(fm.LABELS)
  assert builder.info.supervised_keys == ("image", "label")
  assert builder.info.redistribution_info.license == "MIT"


def test_builder_prefers_the_installed_dir(tmp_path, monkeypatch, failing_apt_get):
  put_files(tmp_path / "installed")
  monkeypatch.setattr(fm, "INSTALLED_DIR", str(tmp_path / "installed"))
  broken = {name: b"not an idx file" for name in fm.FILE_NAMES}
  put_files(tmp_path / "manual", broken)  # Not read.
  assert_fake_splits(build(tmp_path / "tfds", tmp_path / "manual"))
  assert apt_calls(failing_apt_get) == []


def test_builder_downloads_the_deb_with_apt_get(tmp_path, monkeypatch):
  store = tmp_path / "store"
  store.mkdir()
  in_deb = {f"usr/share/datasets/fashion-mnist/{n}": c for n, c in fake_files().items()}
  in_deb["usr/share/doc/dataset-fashion-mnist/copyright"] = b"MIT"
  write_deb(store / "dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb", in_deb)
  fake = tmp_path / "fake_apt"
  fake_apt_get(fake, store)
  monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
  assert_fake_splits(build(tmp_path / "tfds"))
  assert apt_calls(fake) == ["download dataset-fashion-mnist"]
  assert list((tmp_path / "tfds" / "downloads" / "fashion_mnist_debs").glob("*.deb"))


def test_a_deb_without_the_files_says_so(tmp_path, failing_apt_get):
  (tmp_path / "manual").mkdir()
  write_deb(tmp_path / "manual" / "dataset-fashion-mnist_1_all.deb", {"usr/share/doc/x": b"x"})
  with pytest.raises(FileNotFoundError, match=r"dataset-fashion-mnist_1_all.deb lacks \["):
    build(tmp_path / "tfds", tmp_path / "manual")


# -- the real files ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_real_files_have_upstreams_splits_and_labels(fashion_mnist_data_dir):
  # Prepared (before INSTALLED_DIR moved) from the installed files, else the downloaded .deb.
  builder = tfds.builder("fashion_mnist_offline", data_dir=str(fashion_mnist_data_dir))
  assert {s: builder.info.splits[s].num_examples for s in ("train", "test")} == fm.NUM_EXAMPLES
  train_images, train_labels = read_split(builder, "train")
  test_labels = read_split(builder, "test")[1]
  # Independent facts of the upstream files: balanced classes, the first labels of each file
  # (as printed by the Keras tutorial) and the pixel mean and std used to normalise them.
  assert np.bincount(train_labels).tolist() == [6000] * 10
  assert np.bincount(test_labels).tolist() == [1000] * 10
  assert train_labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
  assert test_labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
  counts = np.bincount(train_images.ravel(), minlength=256)  # a histogram: no float copy
  values = np.arange(256) / 255
  mean = (counts * values).sum() / counts.sum()
  std = np.sqrt((counts * (values - mean) ** 2).sum() / counts.sum())
  assert (mean, std) == pytest.approx((0.2860, 0.3530), abs=1e-4)
