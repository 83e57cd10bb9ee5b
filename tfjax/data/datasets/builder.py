"""What the TFDS builders of tfjax share: data already on this machine, a split per example.

Each example falls in train, validation or test by a stable hash of a key of its own, so the
same example keeps its split on every machine and when others are added or removed. A source
that comes split (Fashion-MNIST's train and test files) names its own splits instead.
"""

import abc
import hashlib
import inspect
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

SPLITS = ("train", "validation", "test")


def hash_split(key: str, train_per_mille: int, validation_per_mille: int) -> str:
  """ "train" for the first `train_per_mille` of 1000 hash buckets, "validation" up to
  `validation_per_mille`, else "test". SHA-256, not Python's salted `hash`: the same on every
  machine and run, and an example keeps its split when others are added or removed."""
  bucket = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % 1000
  if bucket < train_per_mille:
    return "train"
  if bucket < validation_per_mille:
    return "validation"
  return "test"


def image_features(
  image_shape: tuple[int, int, int], labels: Sequence[str]
) -> tfds.features.FeaturesDict:
  """{"image": uint8 `image_shape`, "label": ClassLabel of `labels`}: the layout of TFDS's mnist.

  The image is a Tensor, not an Image feature (whose PNG encoder needs TensorFlow), stored as its
  raw bytes: the default encoding writes one int64 per pixel, and prepares 70,000 28x28 images
  3-4 times slower."""
  return tfds.features.FeaturesDict(
    {
      "image": tfds.features.Tensor(shape=image_shape, dtype=np.uint8, encoding="bytes"),
      "label": tfds.features.ClassLabel(names=labels),
    }
  )


# The features of a multiple-choice example (social_iqa, wiki_next_sentence): one task reads all.
CONTEXT, CHOICES, LABEL = "context", "choices", "label"


def multiple_choice_features(**extra: tfds.features.FeatureConnector) -> tfds.features.FeaturesDict:
  """{CONTEXT: text, CHOICES: the answers (texts), LABEL: int64 index of the right one}, and
  `extra` features (a title)."""
  return tfds.features.FeaturesDict(
    {
      **extra,
      CONTEXT: tfds.features.Text(),
      CHOICES: tfds.features.Sequence(tfds.features.Text()),
      LABEL: tfds.features.Scalar(np.int64),
    }
  )


class OfflineBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder of data found on this machine (an installed package, local files), written as
  array_record by default: readable by `tfds.data_source` without TensorFlow.

  A subclass gives its description as its docstring, its metadata and split shares as class
  attributes, its `_features` and its `_examples`; defining it registers it with TFDS under the
  snake case of its class name (or under its `name` attribute).
  """

  SUPERVISED_KEYS: tuple[str, str] | None = None
  HOMEPAGE: str
  CITATION: str | None = None
  LICENSE: str | None = None
  # Per-mille bounds of `split_of`: (train, train + validation), e.g. (900, 950) for 90/5/5.
  SPLIT_PER_MILLE: tuple[int, int]
  # The splits `_examples` fills: the hash splits, or those a source comes in ("train", "test").
  SPLITS: tuple[str, ...] = SPLITS
  # Write each split in the order `_examples` gives (TFDS reorders by a hash of the key
  # otherwise), so that example i of the data source is example i of the source files.
  KEEP_ORDER: bool = False

  def __init_subclass__(cls, **kwargs: Any):
    super().__init_subclass__(**kwargs)
    # TFDS 4.9.10 finds a builder's file through the `importlib_resources` backport, which it
    # does not install on Python >= 3.9; the file is known, and has no checksums file beside it.
    cls.code_path = epath.Path(inspect.getfile(cls))

  @classmethod
  def split_of(cls, key: str) -> str:
    """The split of the example whose split key (its title, its text) is `key`."""
    return hash_split(key, *cls.SPLIT_PER_MILLE)

  def __init__(self, *, file_format: str | None = None, **kwargs: Any):
    super().__init__(file_format=file_format or "array_record", **kwargs)

  @abc.abstractmethod
  def _features(self) -> tfds.features.FeatureConnector:
    """The features of an example (they may depend on the builder config)."""

  def _supervised_keys(self) -> tuple[str, str] | None:
    """(input, target) features for `as_supervised`; SUPERVISED_KEYS unless a config decides."""
    return self.SUPERVISED_KEYS

  @abc.abstractmethod
  def _examples(
    self, dl_manager: tfds.download.DownloadManager
  ) -> Iterable[tuple[str, str, dict[str, Any]]]:
    """(split, unique key, features) of every example; the split from `split_of`, or one of
    SPLITS that the source gives."""

  def _info(self) -> tfds.core.DatasetInfo:
    # `DatasetInfo(builder=self, ...)`: `dataset_info_from_configs` needs a dataset folder.
    return tfds.core.DatasetInfo(
      builder=self,
      description=" ".join(type(self).__doc__.split()),  # the docstring, on one line
      features=self._features(),
      supervised_keys=self._supervised_keys(),
      homepage=self.HOMEPAGE,
      citation=self.CITATION,
      license=self.LICENSE,
      disable_shuffling=self.KEEP_ORDER,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
    by_split: dict[str, list[tuple[str, dict[str, Any]]]] = {split: [] for split in self.SPLITS}
    for split, key, features in self._examples(dl_manager):
      if split not in by_split:
        raise ValueError(f"example {key!r} is in split '{split}', not one of {self.SPLITS}")
      by_split[split].append((key, features))
    return {split: self._generate_examples(examples) for split, examples in by_split.items()}

  def _generate_examples(
    self, examples: list[tuple[str, dict[str, Any]]]
  ) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from examples
