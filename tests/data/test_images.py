"""Tests of image-classification inputs: reading TFDS image sets, augmentation, batches."""

import json

import ml_collections
import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds

from tests.tiny_datasets import tiny_builder
from tfjax.data import images, pipeline

# --- examples and eval batches ----------------------------------------------------------------


def numbered_examples(n: int, h: int = 6, w: int = 5, c: int = 1) -> images.ImageExamples:
  """Example i has label i and an image of distinct pixels (none 0, so a zero is padding)."""
  pixels = np.arange(n * h * w * c).reshape(n, h, w, c) % 250 + 1
  return images.ImageExamples(pixels.astype(np.uint8), np.arange(n, dtype=np.int32))


def test_rows_and_the_shared_eval_batches_work_on_image_examples():
  ex = numbered_examples(10)
  row = ex.rows(3)
  assert row["image"].shape == (6, 5, 1) and row["image"].dtype == np.uint8
  assert row["label"] == 3 and row["weights"] == 1.0
  batches = pipeline.eval_batches(ex, 4)
  assert [b["image"].shape for b in batches] == [(4, 6, 5, 1)] * 3
  assert all(b["image"].dtype == np.uint8 for b in batches)
  np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches])[:10], range(10))
  np.testing.assert_array_equal(np.concatenate([b["weights"] for b in batches]), [1] * 10 + [0] * 2)
  np.testing.assert_array_equal(batches[-1]["image"][2:], ex.image[[0, 0]])


def test_image_examples_refuse_other_layouts():
  with pytest.raises(ValueError, match=r"images are float32 \[2, 3, 3, 1\]; give uint8"):
    images.ImageExamples(np.zeros((2, 3, 3, 1), np.float32), np.zeros(2, np.int32))
  with pytest.raises(ValueError, match=r"2 images but labels of shape \[3\]"):
    images.ImageExamples(np.zeros((2, 3, 3, 1), np.uint8), np.zeros(3, np.int32))


# --- augmentation ----------------------------------------------------------------------------


def naive_crop(image, dy, dx, padding, flip):
  """The reference: pad with zeros, cut the window, mirror it."""
  h, w = image.shape[:2]
  padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
  window = padded[dy : dy + h, dx : dx + w]
  return window[:, ::-1] if flip else window


def candidates(image, padding, flip):
  offsets = range(2 * padding + 1)
  return [
    naive_crop(image, dy, dx, padding, f)
    for dy in offsets
    for dx in offsets
    for f in ((False, True) if flip else (False,))
  ]


@pytest.mark.parametrize("padding", [0, 1, 3])
def test_crop_and_flip_equals_a_naive_crop_of_the_zero_padded_image(padding):
  image = numbered_examples(1, h=6, w=5, c=2).image[0]
  for dy in range(2 * padding + 1):
    for dx in range(2 * padding + 1):
      for flip in (False, True):
        got = images.crop_and_flip(image, dy, dx, padding, flip)
        assert got.shape == image.shape and got.dtype == np.uint8
        np.testing.assert_array_equal(got, naive_crop(image, dy, dx, padding, flip))
  centre = images.crop_and_flip(image, padding, padding, padding, False)
  np.testing.assert_array_equal(centre, image)
  np.testing.assert_array_equal(
    images.crop_and_flip(image, padding, padding, padding, True), image[:, ::-1]
  )


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def assert_same_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b, strict=True):
    assert x.keys() == y.keys() == {"image", "label", "weights"}
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])


def test_augmented_rows_are_crops_or_flips_of_their_own_example():
  ex = numbered_examples(12)
  seen = set()
  for batch in take(images.train_iterator(ex, 4, seed=0, crop_padding=2, flip=True), 9):
    assert batch["image"].shape == (4, 6, 5, 1) and batch["image"].dtype == np.uint8
    assert batch["label"].dtype == np.int32
    np.testing.assert_array_equal(batch["weights"], 1.0)
    for image, label in zip(batch["image"], batch["label"], strict=True):
      options = candidates(ex.image[label], 2, flip=True)
      matches = [i for i, option in enumerate(options) if np.array_equal(image, option)]
      assert matches, f"row of example {label} is no crop of it"
      seen.add(matches[0])
  assert len(seen) > 20  # Offsets and flips vary (36 rows, 50 options).


def test_without_augmentation_rows_are_the_examples():
  ex = numbered_examples(8)
  for batch in take(images.train_iterator(ex, 4, seed=0), 4):
    np.testing.assert_array_equal(batch["image"], ex.image[batch["label"]])


def test_the_same_seed_gives_the_same_batches_and_another_seed_others():
  ex = numbered_examples(12)
  run = lambda seed: take(images.train_iterator(ex, 4, seed, crop_padding=2, flip=True), 6)
  assert_same_batches(run(3), run(3))
  first, other = run(3), run(4)
  assert any(not np.array_equal(a["image"], b["image"]) for a, b in zip(first, other, strict=True))


def test_each_epoch_draws_new_crops():
  ex = numbered_examples(8)
  batches = take(images.train_iterator(ex, 4, seed=0, crop_padding=2, flip=True), 6)
  by_epoch = []  # epoch -> {example: its augmented image}
  for epoch in range(3):
    epoch_batches = batches[2 * epoch : 2 * epoch + 2]
    rows = [r for b in epoch_batches for r in zip(b["label"], b["image"], strict=True)]
    assert sorted(int(label) for label, _ in rows) == list(range(8))  # One epoch each.
    by_epoch.append({int(label): image for label, image in rows})
  for a, b in ((0, 1), (1, 2)):
    changed = sum(not np.array_equal(by_epoch[a][i], by_epoch[b][i]) for i in range(8))
    assert changed >= 6  # Each example: 49 in 50 to change.


def test_restoring_the_augmented_iterator_gives_the_same_next_batches():
  ex = numbered_examples(10)  # batches of 4 cross epoch boundaries
  iterator = images.train_iterator(ex, 4, seed=5, crop_padding=1, flip=True)
  take(iterator, 7)
  state = json.loads(json.dumps(iterator.get_state()))  # survives a JSON round trip
  expected = take(iterator, 8)
  restored = images.train_iterator(ex, 4, seed=5, crop_padding=1, flip=True)
  restored.set_state(state)
  assert_same_batches(take(restored, 8), expected)


def test_processes_share_out_each_epoch():
  ex = numbered_examples(8)
  labels = [
    [
      int(label)
      for batch in take(images.train_iterator(ex, 2, 0, p, 2, crop_padding=1, flip=True), 2)
      for label in batch["label"]
    ]
    for p in range(2)
  ]
  assert sorted(labels[0] + labels[1]) == list(range(8))


def test_bad_crop_padding_is_an_error():
  ex = numbered_examples(4)
  with pytest.raises(ValueError, match=r"crop_padding=-1 must be >= 0"):
    images.train_iterator(ex, 2, 0, crop_padding=-1)
  with pytest.raises(ValueError, match=r"crop_padding=5 can shift 6x5 images .* less than 5"):
    images.train_iterator(ex, 2, 0, crop_padding=5)


# --- TFDS datasets by name -------------------------------------------------------------------

GRAY = np.random.default_rng(0).integers(0, 256, (16, 4, 5), np.uint8)  # [h, w]: grayscale
COLOUR = np.random.default_rng(1).integers(0, 256, (6, 6, 6, 3), np.uint8)

# Grayscale [h, w] tensors, a float feature and an int one, and a split with an unlabelled -1.
tiny_builder(
  "tiny_gray_images",
  {
    "pixels": tfds.features.Tensor(shape=(4, 5), dtype=np.uint8),
    "mask": tfds.features.Tensor(shape=(4, 5), dtype=np.float32),
    "kind": tfds.features.ClassLabel(names=["a", "b", "c"]),
    "idx": tfds.features.Scalar(np.int32),
  },
  {
    "train": [
      {"pixels": GRAY[i], "mask": np.zeros((4, 5), np.float32), "kind": i % 3, "idx": i}
      for i in range(12)
    ],
    "test": [
      {"pixels": GRAY[i], "mask": np.zeros((4, 5), np.float32), "kind": i % 3, "idx": i}
      for i in range(12, 16)
    ],
    "unlabelled": [
      {"pixels": GRAY[0], "mask": np.zeros((4, 5), np.float32), "kind": k, "idx": 0}
      for k in (0, -1)
    ],
  },
)
# PNG images (written with PIL: TFDS's own encoder needs TensorFlow), as the catalogue's are, and
# a split of two sizes.
tiny_builder(
  "tiny_png_images",
  {
    "image": tfds.features.Image(shape=(None, None, 3)),
    "label": tfds.features.ClassLabel(names=["x", "y"]),
  },
  {
    "train": lambda: [
      {"image": PIL.Image.fromarray(COLOUR[i]), "label": i % 2} for i in range(len(COLOUR))
    ],
    "mixed": lambda: [
      {"image": PIL.Image.fromarray(COLOUR[0]), "label": 0},
      {"image": PIL.Image.fromarray(np.zeros((8, 6, 3), np.uint8)), "label": 1},
    ],
  },
)


def data_config(**overrides) -> ml_collections.ConfigDict:
  config = dict(
    name="tiny_gray_images",
    tfds_data_dir="",
    image_field="pixels",
    label_field="kind",
    train_split="train",
    eval_split="train[:5]",
    test_split="test",
  )
  config.update(overrides)
  return ml_collections.ConfigDict(config)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
  return str(tmp_path_factory.mktemp("tfds"))


def source_order(data_dir, name, split, field):
  source = tfds.builder(name, data_dir=data_dir).as_data_source(split=split)
  return [source[i][field] for i in range(len(source))]


def test_prepare_reads_grayscale_tensors_as_h_w_1(data_dir):
  data = images.prepare_image_data(data_config(tfds_data_dir=data_dir))
  assert data.label_names == ("a", "b", "c") and data.num_labels == 3
  assert data.image_shape == (4, 5, 1)
  assert (len(data.train), len(data.eval), len(data.test)) == (12, 5, 4)
  assert data.train.image.dtype == np.uint8 and data.train.label.dtype == np.int32
  idx = source_order(data_dir, "tiny_gray_images", "train", "idx")  # data-source order
  np.testing.assert_array_equal(data.train.image[..., 0], GRAY[idx])
  np.testing.assert_array_equal(data.train.label, np.array(idx) % 3)
  np.testing.assert_array_equal(data.eval.image, data.train.image[:5])


def test_prepare_decodes_png_images(data_dir):
  config = data_config(
    name="tiny_png_images",
    tfds_data_dir=data_dir,
    image_field="image",
    label_field="label",
    test_split="",
  )
  data = images.prepare_image_data(config)
  assert data.test is None and data.image_shape == (6, 6, 3)
  for image, label in zip(data.train.image, data.train.label, strict=True):
    matches = [i for i in range(len(COLOUR)) if np.array_equal(image, COLOUR[i])]
    assert len(matches) == 1 and label == matches[0] % 2  # Lossless PNG, the right label.


def test_prepare_errors_name_the_split_feature_and_fix(data_dir):
  with pytest.raises(ValueError, match=r"split 'unlabelled' of dataset 'tiny_gray_images': exa"):
    images.prepare_image_data(data_config(tfds_data_dir=data_dir, eval_split="unlabelled"))
  with pytest.raises(ValueError, match=r"'idx' .* is a Scalar, not a ClassLabel"):
    images.prepare_image_data(data_config(tfds_data_dir=data_dir, label_field="idx"))
  with pytest.raises(ValueError, match=r"'mask' .* is a Tensor of float32, not uint8 images"):
    images.prepare_image_data(data_config(tfds_data_dir=data_dir, image_field="mask"))
  with pytest.raises(ValueError, match=r"no feature 'img'; its features are"):
    images.prepare_image_data(data_config(tfds_data_dir=data_dir, image_field="img"))
  mixed = data_config(
    name="tiny_png_images",
    tfds_data_dir=data_dir,
    image_field="image",
    label_field="label",
    eval_split="mixed",
  )
  with pytest.raises(
    ValueError, match=r"'mixed' .* holds images of 2 shapes \(example 0 is \[\d, 6, 3\], example 1"
  ):
    images.prepare_image_data(mixed)


def test_prepare_reads_mnist_5k(tmp_path):
  config = data_config(
    name="mnist_5k",
    tfds_data_dir=str(tmp_path),
    image_field="image",
    label_field="label",
    train_split="train",
    eval_split="validation",
    test_split="test",
  )
  data = images.prepare_image_data(config)
  assert (len(data.train), len(data.eval), len(data.test)) == (3979, 515, 506)
  assert data.image_shape == (28, 28, 1) and data.label_names == tuple("0123456789")
  assert set(np.unique(data.eval.label)) == set(range(10))


@pytest.mark.slow
def test_prepare_reads_fashion_mnist_offline(fashion_mnist_data_dir):
  config = data_config(
    name="fashion_mnist_offline",
    tfds_data_dir=str(fashion_mnist_data_dir),
    image_field="image",
    label_field="label",
    train_split="train[:55000]",
    eval_split="train[55000:]",
    test_split="test",
  )
  data = images.prepare_image_data(config)
  assert (len(data.train), len(data.eval), len(data.test)) == (55_000, 5_000, 10_000)
  assert data.image_shape == (28, 28, 1) and data.num_labels == 10
  assert data.label_names[0] == "T-shirt/top" and data.label_names[9] == "Ankle boot"
  assert data.train.label[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]  # File order.
  batch = next(images.train_iterator(data.train, 128, seed=0, crop_padding=2, flip=True))
  assert batch["image"].shape == (128, 28, 28, 1) and batch["image"].dtype == np.uint8
