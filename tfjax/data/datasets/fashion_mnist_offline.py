"""TFDS builder `fashion_mnist_offline`: Fashion-MNIST (Xiao et al. 2017) from Debian's package.

Zalando's 70,000 28x28 grayscale photos of clothing in 10 classes, a drop-in for MNIST that is
harder to fit: the real image set for ViT here. TFDS's own `fashion_mnist` downloads the files;
offline, Debian ships them as `dataset-fashion-mnist` (MIT), the four gzip'd IDX files of the
upstream repository in /usr/share/datasets/fashion-mnist. They are read, in order of
preference, from that directory (`apt-get install dataset-fashion-mnist`), from the manual dir
(the four files, or the .deb), from an earlier download, or from the .deb fetched with
`apt-get download dataset-fashion-mnist` (31 MB, no root needed).

Splits are the source's: "train" the 60,000 of train-*, "test" the 10,000 of t10k-*, each
written in file order, so example i of the data source is image i of its file. There is no
validation split: take one from train ("train[:55000]" / "train[55000:]"). Features: "image"
uint8 [28, 28, 1] (a Tensor: the Image feature's encoder needs TensorFlow), "label" a
ClassLabel of LABELS, the layout of TFDS's `fashion_mnist`. Importing this module registers
the builder.
"""

import gzip
import math
import re
import struct
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from tfjax.data.datasets.builder import OfflineBuilder, image_features
from tfjax.data.datasets.debian import builder_debs, deb_members, manual_dir

PACKAGE = "dataset-fashion-mnist"
# Where `apt-get install dataset-fashion-mnist` puts the files (a module attribute: tests move it).
INSTALLED_DIR = "/usr/share/datasets/fashion-mnist"
# (images, labels) file of each split.
FILES = {
  "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
  "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FILE_NAMES = tuple(name for pair in FILES.values() for name in pair)
NUM_EXAMPLES = {"train": 60_000, "test": 10_000}  # Upstream's; the builder reads what is there.
LABELS = (
  "T-shirt/top",
  "Trouser",
  "Pullover",
  "Dress",
  "Coat",
  "Sandal",
  "Shirt",
  "Sneaker",
  "Bag",
  "Ankle boot",
)
IMAGE_SHAPE = (28, 28, 1)
# IDX magic numbers (LeCun et al.'s MNIST format): 0x08 = unsigned byte, then the number of
# dimensions: 3 for images [n, rows, cols], 1 for labels [n].
IMAGES_MAGIC, LABELS_MAGIC = 0x0803, 0x0801  # 2051, 2049

_IN_DEB = re.compile(r"/usr/share/datasets/fashion-mnist/[^/]+-ubyte\.gz$")

_CITATION = """\
@article{xiao2017fashion,
  author  = {Han Xiao and Kashif Rasul and Roland Vollgraf},
  title   = {Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms},
  journal = {arXiv preprint arXiv:1708.07747},
  year    = {2017}
}
"""


# ---------------------------------------------------------------------------------------------
# The IDX format.


def parse_idx(raw: bytes, name: str, magic: int) -> np.ndarray:
  """The uint8 array of an IDX file, gzip'd or not: a big-endian uint32 magic number (0x08 for
  unsigned bytes, then the number of dimensions), one big-endian uint32 size per dimension, then
  the values in C order. Errors name the file (`name`) and say how to fix it."""
  if raw[:2] == b"\x1f\x8b":
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
      raise ValueError(f"{name} is not a readable gzip file ({e}); download it again") from e
  ndim = magic & 0xFF
  found = struct.unpack(">I", raw[:4])[0] if len(raw) >= 4 else None
  if found != magic:
    kind = f"uint8 IDX of {ndim} dimension{'s' * (ndim > 1)}"
    raise ValueError(
      f"{name} has magic number {found}, not {magic} ({kind}); it is not that file (images "
      "and labels swapped?): download it again"
    )
  header = 4 + 4 * ndim
  dims = struct.unpack(f">{ndim}I", raw[4:header]) if len(raw) >= header else ()
  if len(dims) != ndim or len(raw) - header != math.prod(dims):
    raise ValueError(
      f"{name} holds {max(len(raw) - header, 0)} bytes of values, but its header says "
      f"{'x'.join(map(str, dims)) or 'nothing'}; the file is truncated: download it again"
    )
  return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def read_split(
  images_raw: bytes, labels_raw: bytes, names: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [n, 28, 28, 1], labels uint8 [n]) of one split's two IDX files."""
  images = parse_idx(images_raw, names[0], IMAGES_MAGIC)
  labels = parse_idx(labels_raw, names[1], LABELS_MAGIC)
  if images.shape[1:] != IMAGE_SHAPE[:2]:
    raise ValueError(
      f"{names[0]} holds images of {images.shape[1]}x{images.shape[2]} pixels, not 28x28; it is "
      "not a Fashion-MNIST file"
    )
  if len(images) != len(labels):
    raise ValueError(
      f"{names[0]} holds {len(images)} images but {names[1]} {len(labels)} labels; take both "
      "files from the same release"
    )
  if len(labels) and labels.max() >= len(LABELS):
    raise ValueError(f"{names[1]} holds label {labels.max()}, not in [0, {len(LABELS)})")
  return images[..., None], labels


# ---------------------------------------------------------------------------------------------
# Finding the files.


def files_in(directory: epath.PathLike) -> dict[str, bytes] | None:
  """{file name: content} of the four files in `directory`, or None unless it holds them all."""
  paths = [epath.Path(directory) / name for name in FILE_NAMES]
  if not all(path.is_file() for path in paths):
    return None
  return {path.name: path.read_bytes() for path in paths}


def files_in_deb(deb_path: epath.PathLike) -> dict[str, bytes]:
  """{file name: content} of the four files inside the package's .deb."""
  files = {path.rsplit("/", 1)[1]: content for path, content in deb_members(deb_path, _IN_DEB)}
  missing = [name for name in FILE_NAMES if name not in files]
  if missing:
    raise FileNotFoundError(
      f"{epath.Path(deb_path).name} lacks {missing} in {INSTALLED_DIR}; use Debian's "
      f"{PACKAGE} package (apt-get download {PACKAGE})"
    )
  return files


def source_files(dl_manager: tfds.download.DownloadManager) -> dict[str, bytes]:
  """The four files, from the first place holding them (see the module docstring)."""
  for directory in [INSTALLED_DIR, *manual_dir(dl_manager)]:
    files = files_in(directory)
    if files is not None:
      logging.info("fashion_mnist_offline: reading the files in %s", directory)
      return files
  (deb,) = builder_debs([PACKAGE], dl_manager, "fashion_mnist_debs")
  logging.info("fashion_mnist_offline: reading %s", deb)
  return files_in_deb(deb)


# ---------------------------------------------------------------------------------------------
# The builder.


class FashionMnistOffline(OfflineBuilder):
  """Fashion-MNIST (Xiao et al. 2017): 28x28 grayscale photos of Zalando articles in 10 classes,
  from Debian's dataset-fashion-mnist package. Splits are the source's: 60,000 train and 10,000
  test images, each in file order."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: Debian's 0.0~git20200523 files, in file order."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f"Optional: put the four *-ubyte.gz files, or the .deb of `apt-get download {PACKAGE}`, "
    "here to build offline."
  )
  SUPERVISED_KEYS = ("image", "label")
  HOMEPAGE = "https://github.com/zalandoresearch/fashion-mnist"
  CITATION = _CITATION
  LICENSE = "MIT"
  SPLITS = tuple(FILES)
  KEEP_ORDER = True

  def _features(self) -> tfds.features.FeaturesDict:
    return image_features(IMAGE_SHAPE, LABELS)

  def _examples(self, dl_manager: tfds.download.DownloadManager) -> Iterator[tuple[str, str, dict]]:
    files = source_files(dl_manager)
    for split, names in FILES.items():
      images, labels = read_split(files[names[0]], files[names[1]], names)
      logging.info("fashion_mnist_offline: %d %s examples", len(labels), split)
      for i in range(len(labels)):
        yield split, f"{split}-{i:05d}", {"image": images[i], "label": int(labels[i])}
