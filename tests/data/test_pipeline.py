"""Tests of the shared pipeline pieces: the prepared dataset and its reads, the grain iterators."""

import json

import grain
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests.tiny_datasets import tiny_builder
from tfjax.data import pipeline

N = 2500  # more than two read chunks
tiny_builder(
  "tiny_numbers",
  {"text": tfds.features.Text(), "number": np.int32},
  {
    "train": [{"text": f"n{i}", "number": i} for i in range(N)],
    "empty": [{"text": "", "number": 0}],
  },
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> pipeline.PreparedDataset:
  data_dir = tmp_path_factory.mktemp("tfds")
  config = ml_collections.ConfigDict(dict(name="tiny_numbers", tfds_data_dir=str(data_dir)))
  return pipeline.prepare_dataset(config, {"text_field": "text"})


def test_prepared_dataset_is_array_record_with_caches_beside_it(dataset):
  assert str(dataset.builder.info.file_format.value) == "array_record"
  assert dataset.id == "tiny_numbers/1.0.0"
  assert dataset.cache_dir == dataset.builder.data_dir_root / "tfjax_cache"


def test_examples_are_every_example_in_data_source_order(dataset):
  source = dataset.builder.as_data_source(split="train")
  numbers = [int(e["number"]) for e in dataset.examples("train")]
  assert numbers == [int(source[i]["number"]) for i in range(N)]
  assert sorted(numbers) == list(range(N))
  assert list(dataset.texts("train[:3]", "text")) == [f"n{i}" for i in numbers[:3]]
  assert list(dataset.examples("train[:0]")) == []  # TFDS itself cannot open an empty slice


def test_errors_name_the_missing_feature_split_or_text(dataset, tmp_path):
  config = ml_collections.ConfigDict(dict(name="tiny_numbers", tfds_data_dir=str(tmp_path)))
  message = r"no feature 'body'; its features are \['text', 'number'\]. Set config.data.text_field"
  with pytest.raises(ValueError, match=message):
    pipeline.prepare_dataset(config, {"text_field": "body"})
  with pytest.raises(ValueError, match=r"no split 'train\+test'; its splits are \['train', 'e"):
    next(dataset.examples("train+test"))
  with pytest.raises(ValueError, match="split 'empty' of dataset 'tiny_numbers' has no text"):
    dataset.check_not_empty("empty", dataset.texts("empty", "text"), "text")
  dataset.check_not_empty("train", dataset.texts("train", "text"), "text")


def elements(n):
  return grain.MapDataset.range(n).map(lambda i: {"i": np.int64(i)})


def take(iterator, n):
  return [int(x) for _ in range(n) for x in next(iterator)["i"]]


def test_train_iterator_shards_processes_repeats_epochs_and_resumes():
  epoch = elements(24).seed(0).shuffle()
  shards = [take(pipeline.train_iterator(epoch, 4, p, 2), 3) for p in range(2)]
  assert sorted(shards[0] + shards[1]) == list(range(24))  # one epoch, disjoint halves
  iterator = pipeline.train_iterator(epoch, 5, 0, 1)
  first_epochs = take(iterator, 10)  # 50 elements: batches cross the epoch boundary
  assert sorted(first_epochs[:24]) == sorted(first_epochs[24:48]) == list(range(24))
  assert first_epochs[:24] != first_epochs[24:48]  # a fresh order each epoch
  state = json.loads(json.dumps(iterator.get_state()))
  expected = take(iterator, 4)
  resumed = pipeline.train_iterator(epoch, 5, 0, 1)
  resumed.set_state(state)
  assert take(resumed, 4) == expected


def test_train_iterator_augments_each_element_anew_every_epoch_and_resumes():
  draw = lambda element, rng: {"i": element["i"], "r": np.int64(rng.integers(1 << 30))}
  make = lambda p=0, n=1: pipeline.train_iterator(
    elements(6), 3, p, n, augment=draw, augment_seed=7
  )
  iterator = make()
  batches = [next(iterator) for _ in range(6)]  # three epochs of one fixed order
  assert [int(i) for b in batches for i in b["i"]] == list(range(6)) * 3
  draws = [int(r) for b in batches for r in b["r"]]
  assert len(set(draws)) == 18  # no element draws the same in two epochs
  again = make()
  for _ in range(4):
    next(again)
  resumed = make()
  resumed.set_state(json.loads(json.dumps(again.get_state())))
  assert [int(r) for _ in range(2) for r in next(resumed)["r"]] == draws[12:]
  assert list(next(make(0, 2))["r"]) != list(next(make(1, 2))["r"])  # processes draw apart


def test_train_iterator_refuses_bad_arguments():
  with pytest.raises(ValueError, match=r"process_index=2 must be in \[0, 2\)"):
    pipeline.train_iterator(elements(8), 2, 2, 2)
  with pytest.raises(ValueError, match="batch_size=0 must be positive"):
    pipeline.train_iterator(elements(8), 0)
  with pytest.raises(ValueError, match="3 rows cannot be shared by 4 processes; fix it"):
    pipeline.train_iterator(elements(3), 1, 0, 4, what="rows", fix="fix it")


def test_first_batches_are_the_first_full_batches_in_order():
  batches = pipeline.first_batches(elements(10), 3, max_batches=2)
  assert [list(b["i"]) for b in batches] == [[0, 1, 2], [3, 4, 5]]
  assert len(pipeline.first_batches(elements(10), 3, max_batches=9)) == 3
  assert pipeline.first_batches(elements(2), 3, max_batches=9) == []


def test_encode_in_chunks_calls_encode_on_bounded_chunks():
  sizes = []
  encode = lambda texts: sizes.append(len(texts)) or [len(t) for t in texts]
  assert pipeline.encode_in_chunks(encode, ["ab"] * 2100) == [2] * 2100
  assert sizes == [pipeline.ENCODE_CHUNK, pipeline.ENCODE_CHUNK, 2100 - 2 * pipeline.ENCODE_CHUNK]
