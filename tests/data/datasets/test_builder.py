"""Tests of the shared TFDS builder: hash splits, registration, metadata, array_record files."""

import collections
import hashlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfjax.data.datasets.builder import (
  SPLITS,
  OfflineBuilder,
  hash_split,
  image_features,
  multiple_choice_features,
)

WORDS = [f"word{i}" for i in range(300)]


class HashSplitWords(OfflineBuilder):
  """Words of a test, split 50/25/25 by their hash."""

  VERSION = tfds.core.Version("1.0.0")
  SUPERVISED_KEYS = ("word", "length")
  HOMEPAGE = "https://example.org/words"
  LICENSE = "CC0"
  SPLIT_PER_MILLE = (500, 750)

  def _features(self):
    return tfds.features.FeaturesDict({"word": tfds.features.Text(), "length": np.int32})

  def _examples(self, dl_manager):
    for word in WORDS:
      yield self.split_of(word), word, {"word": word, "length": len(word)}


def test_hash_split_is_sha256_of_the_key_in_per_mille_buckets():
  for key in ("a", "b", "title", "Ö"):
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 1000
    expected = "train" if bucket < 900 else "validation" if bucket < 950 else "test"
    assert hash_split(key, 900, 950) == expected
  counts = collections.Counter(hash_split(str(i), 800, 900) for i in range(20_000))
  assert set(counts) == set(SPLITS)
  assert 0.78 < counts["train"] / 20_000 < 0.82 and 0.09 < counts["test"] / 20_000 < 0.11


def test_a_subclass_registers_under_its_snake_case_name_and_the_base_does_not():
  assert tfds.builder_cls("hash_split_words") is HashSplitWords
  with pytest.raises(tfds.core.registered.DatasetNotFoundError):
    tfds.builder_cls("offline_builder")


def test_builds_array_record_with_each_example_in_its_hash_split(tmp_path):
  builder = tfds.builder("hash_split_words", data_dir=str(tmp_path))
  builder.download_and_prepare()
  assert str(builder.info.file_format.value) == "array_record"
  seen = []
  for split in SPLITS:
    source = builder.as_data_source(split=split)
    words = [source[i]["word"].decode() for i in range(len(source))]
    assert words and all(hash_split(w, 500, 750) == split for w in words)
    seen += words
  assert sorted(seen) == sorted(WORDS)


def test_metadata_comes_from_the_class_and_its_docstring(tmp_path):
  info = tfds.builder("hash_split_words", data_dir=str(tmp_path)).info
  assert info.description == "Words of a test, split 50/25/25 by their hash."
  assert info.supervised_keys == ("word", "length")
  assert info.homepage == "https://example.org/words"
  assert info.redistribution_info.license == "CC0"
  assert HashSplitWords.code_path.name == "test_builder.py"


class GivenSplitWords(OfflineBuilder):
  """Words of a test in the two splits their source gives, in the order given."""

  VERSION = tfds.core.Version("1.0.0")
  HOMEPAGE = "https://example.org/words"
  SPLITS = ("train", "test")
  KEEP_ORDER = True

  def _features(self):
    return tfds.features.FeaturesDict({"word": tfds.features.Text()})

  def _examples(self, dl_manager):
    for i, word in enumerate(WORDS):
      yield ("train" if i < 200 else "test"), word, {"word": word}


def test_a_builder_with_given_splits_writes_just_those_in_the_order_given(tmp_path):
  builder = tfds.builder("given_split_words", data_dir=str(tmp_path))
  builder.download_and_prepare()
  assert set(builder.info.splits.keys()) == {"train", "test"}
  for split, words in (("train", WORDS[:200]), ("test", WORDS[200:])):
    source = builder.as_data_source(split=split)
    assert [source[i]["word"].decode() for i in range(len(source))] == words


def test_the_hash_builder_reorders_its_examples_by_key(tmp_path):
  # What KEEP_ORDER changes: TFDS writes examples in the order of a hash of their keys.
  builder = tfds.builder("hash_split_words", data_dir=str(tmp_path))
  builder.download_and_prepare()
  source = builder.as_data_source(split="train")
  words = [source[i]["word"].decode() for i in range(len(source))]
  assert words != sorted(words, key=WORDS.index)


def test_image_features_are_uint8_tensors_and_a_class_label():
  features = image_features((28, 28, 1), ("a", "b"))
  assert features["image"].shape == (28, 28, 1) and features["image"].np_dtype == np.uint8
  assert features["label"].names == ["a", "b"]
  image = np.arange(784, dtype=np.uint32).astype(np.uint8).reshape(28, 28, 1)
  encoded = features.encode_example({"image": image, "label": "b"})
  assert encoded["image"] == image.tobytes()  # Raw bytes, not one int64 per pixel.


def test_multiple_choice_features_are_context_choices_and_an_int64_label():
  features = multiple_choice_features(title=tfds.features.Text())
  assert list(features.keys()) == ["title", "context", "choices", "label"]
  assert features["label"].np_dtype == np.int64
  assert isinstance(features["choices"], tfds.features.Sequence)  # any number of answers
  assert isinstance(features["choices"].feature, tfds.features.Text)
