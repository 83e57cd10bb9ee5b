"""Image-classification inputs for ViT: a TFDS image dataset -> uint8 arrays in memory -> batches.

Any TFDS image-classification set reads by name: the offline `fashion_mnist_offline` and
`mnist_5k`, or, for users online, catalogue sets such as `mnist`, `fashion_mnist`, `cifar10`
(their Image features decode with PIL through `tfds.data_source`, without TensorFlow). A split is
read whole into memory as uint8 (Fashion-MNIST's train split is 47 MB), so its images must share
one shape; they are not resized here. Batches stay uint8 ([batch, h, w, c]); the model's task
converts them to float.

Training batches come from `pipeline.examples_train_iterator` (a fresh order each epoch,
checkpointable), with optional augmentation drawn per example and per epoch: a random crop of
the image zero-padded by `crop_padding` pixels, and a random horizontal flip (the CIFAR-10
recipe of He et al. 2016, §4.2: padding 4). Evaluation batches are `eval_batches`, shared with
text classification.
"""

import dataclasses
from typing import Any

import grain
import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from tfjax.data import classification, pipeline


@dataclasses.dataclass(frozen=True)
class ImageExamples(pipeline.ArrayExamples):
  """The images and labels of one split; row i is example i, in data-source order."""

  image: np.ndarray  # [n, h, w, c] uint8
  label: np.ndarray  # [n] int32

  def __post_init__(self):
    if self.image.ndim != 4 or self.image.dtype != np.uint8:
      raise ValueError(
        f"images are {self.image.dtype} {list(self.image.shape)}; give uint8 [n, h, w, c]"
      )
    if self.label.shape != self.image.shape[:1]:
      raise ValueError(f"{len(self.image)} images but labels of shape {list(self.label.shape)}")


@dataclasses.dataclass(frozen=True)
class ImageData:
  """The label names and the train, eval and (optional) test splits of one dataset."""

  label_names: tuple[str, ...]
  train: ImageExamples
  eval: ImageExamples
  test: ImageExamples | None

  @property
  def num_labels(self) -> int:
    return len(self.label_names)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(height, width, channels) of every image."""
    return tuple(self.train.image.shape[1:])


def prepare_image_data(data_config: Any) -> ImageData:
  """Reads a TFDS image-classification dataset by name, each split whole into memory.

  `data_config` is `config.data`: name (e.g. "fashion_mnist_offline", "mnist_5k", "mnist",
  "cifar10"), tfds_data_dir ("" for the TFDS default), image_field (a uint8 Image or Tensor
  feature), label_field (a ClassLabel feature), train_split, eval_split (e.g. "train[:55000]",
  "train[55000:]"), test_split ("" for none). The dataset is prepared once as array_record and
  read with `tfds.data_source` (no TensorFlow). Grayscale [h, w] images become [h, w, 1].
  """
  fields = {"image_field": data_config.image_field, "label_field": data_config.label_field}
  dataset = pipeline.prepare_dataset(data_config, fields)
  label_names = classification.class_label_names(dataset, data_config.label_field)
  _check_image_feature(dataset, data_config.image_field)

  def read_split(split: str) -> ImageExamples:
    what = f"split '{split}' of dataset '{dataset.name}'"
    images, labels = [], []
    for example in dataset.examples(split):
      images.append(example[data_config.image_field])
      labels.append(example[data_config.label_field])
    if not images:
      raise ValueError(f"{what} has no examples; choose a split that has some")
    shapes = {np.shape(image) for image in images}
    if len(shapes) > 1:
      first = np.shape(images[0])
      other = next(i for i, image in enumerate(images) if np.shape(image) != first)
      raise ValueError(
        f"{what} holds images of {len(shapes)} shapes (example 0 is {list(first)}, example "
        f"{other} {list(np.shape(images[other]))}); it is read whole as one array: choose a "
        "dataset of one image size (mnist, fashion_mnist, cifar10) or resize it to one when "
        "preparing it (imagenette's configs only bound the shorter side)"
      )
    image = np.stack(images)
    if image.ndim == 3:  # Grayscale [n, h, w].
      image = image[..., None]
    try:
      label = classification.label_ids(labels, label_names)
    except ValueError as e:
      raise ValueError(f"{what}: {e}") from e
    logging.info("Read %s: %d images of %s", what, len(label), "x".join(map(str, image.shape[1:])))
    return ImageExamples(image, label)

  data = ImageData(
    label_names=label_names,
    train=read_split(data_config.train_split),
    eval=read_split(data_config.eval_split),
    test=read_split(data_config.test_split) if data_config.test_split else None,
  )
  for split, examples in (("eval", data.eval), ("test", data.test)):
    if examples is not None and examples.image.shape[1:] != data.train.image.shape[1:]:
      raise ValueError(
        f"the {split} split of dataset '{dataset.name}' holds {list(examples.image.shape[1:])} "
        f"images but the train split {list(data.image_shape)}; take both from splits of one "
        "image size"
      )
  return data


def _check_image_feature(dataset: pipeline.PreparedDataset, image_field: str) -> None:
  """The feature must hold uint8 images of rank 2 or 3 (an Image, or a Tensor)."""
  feature = dataset.builder.info.features[image_field]
  dtype = getattr(feature, "np_dtype", None)
  rank = len(getattr(feature, "shape", ()) or ())
  if not isinstance(feature, tfds.features.Image | tfds.features.Tensor) or dtype != np.uint8:
    of = f" of {np.dtype(dtype).name}" if dtype is not None else ""
    raise ValueError(
      f"feature '{image_field}' of dataset '{dataset.name}' is a {type(feature).__name__}{of}, "
      "not uint8 images; set config.data.image_field to the image feature"
    )
  if rank not in (2, 3):
    raise ValueError(
      f"feature '{image_field}' of dataset '{dataset.name}' has shape {feature.shape}, not "
      "[h, w] or [h, w, c]; set config.data.image_field to a feature of single images"
    )


# --- augmentation and batches ----------------------------------------------------------------


def crop_and_flip(image: np.ndarray, dy: int, dx: int, padding: int, flip: bool) -> np.ndarray:
  """The [h, w] window at (dy, dx) of `image` ([h, w, c]) zero-padded by `padding` pixels on
  each side, mirrored left-right if `flip`: `image` shifted by (padding - dy, padding - dx)
  with zeros where it moved away, without building the padded copy."""
  h, w = image.shape[:2]
  sy, sx = dy - padding, dx - padding  # out[i, j] = image[i + sy, j + sx] where that exists
  out = np.zeros_like(image)
  out[max(0, -sy) : h - max(0, sy), max(0, -sx) : w - max(0, sx)] = image[
    max(0, sy) : h + min(0, sy), max(0, sx) : w + min(0, sx)
  ]
  return out[:, ::-1] if flip else out


def augmentation(crop_padding: int = 0, flip: bool = False) -> pipeline.Augment | None:
  """The per-example transformation of batches' rows: a random crop after zero padding by
  `crop_padding` pixels (every offset in [0, 2 * crop_padding] equally likely) and, if `flip`,
  a horizontal flip with probability 1/2. None when neither is asked for."""
  if crop_padding < 0:
    raise ValueError(f"crop_padding={crop_padding} must be >= 0 (0: no random crop)")
  if not crop_padding and not flip:
    return None

  def augment(row: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    dy, dx = rng.integers(0, 2 * crop_padding + 1, size=2) if crop_padding else (0, 0)
    mirror = bool(flip and rng.random() < 0.5)
    return {**row, "image": crop_and_flip(row["image"], int(dy), int(dx), crop_padding, mirror)}

  return augment


def train_iterator(
  examples: ImageExamples,
  batch_size: int,
  seed: int,
  process_index: int = 0,
  process_count: int = 1,
  *,
  crop_padding: int = 0,
  flip: bool = False,
) -> grain.DatasetIterator:
  """Endless shuffled batches for this process; checkpointable (`get_state()`/`set_state()`).

  A fresh global order each epoch from `seed`, process `i` taking examples `i::process_count`
  of it; `batch_size` is per process. Each example is augmented anew in every epoch (see
  `augmentation`), from `seed`. Batches hold uint8 "image", int32 "label" and "weights" 1.
  """
  h, w = examples.image.shape[1:3]
  if crop_padding >= min(h, w):
    raise ValueError(
      f"crop_padding={crop_padding} can shift {h}x{w} images out of the window; use less than "
      f"{min(h, w)} (4 is usual for 32x32 images)"
    )
  return pipeline.examples_train_iterator(
    examples,
    batch_size,
    seed,
    process_index,
    process_count,
    augment=augmentation(crop_padding, flip),
  )
