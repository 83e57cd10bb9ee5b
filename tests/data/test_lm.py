"""Tests of the LM pipeline: token caches, windows, grain iterators, eval batches, baseline."""

import json
import math

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests.tiny_datasets import tiny_builder
from tfjax.data import lm

VOCAB = 512
SEQ_LEN = 32


def data_config(**overrides) -> ml_collections.ConfigDict:
  config = dict(
    name="wiki_vital_articles",
    text_field="extract",
    train_split="train",
    eval_split="validation",
    tfds_data_dir="",
    cache_dir="",
    seq_len=SEQ_LEN,
  )
  config.update(overrides)
  return ml_collections.ConfigDict(config)


@pytest.fixture(scope="module")
def wiki_lm(wiki_data_dir):
  # cache_dir "" -> <tfds_data_dir>/tfjax_cache.
  return lm.prepare_lm_data(data_config(tfds_data_dir=str(wiki_data_dir)), vocab_size=VOCAB)


# --- tokenization and its cache ------------------------------------------------------------


def test_token_cache_equals_fresh_tokenization(wiki_lm, split_texts):
  tok = wiki_lm.tokenizer
  for split in ("validation", "test"):
    expected = [i for text in split_texts[split] for i in (*tok.encode(text), tok.eos_id)]
    tokens = wiki_lm.tokens(split)
    assert tokens.dtype == np.int32
    np.testing.assert_array_equal(tokens, np.array(expected, np.int32))


def test_stream_decodes_back_to_the_documents(wiki_lm, split_texts):
  tokens = np.asarray(wiki_lm.tokens("validation"))
  docs = np.split(tokens, np.flatnonzero(tokens == wiki_lm.tokenizer.eos_id) + 1)[:-1]
  assert [wiki_lm.tokenizer.decode(d) for d in docs] == split_texts["validation"]


def test_caches_live_under_the_tfds_data_dir_and_are_memory_mapped(wiki_lm, wiki_data_dir):
  assert wiki_lm.tokenizer.model_path.is_relative_to(wiki_data_dir / "tfjax_cache")
  assert isinstance(wiki_lm.tokens("train"), np.memmap)
  assert len(list((wiki_data_dir / "tfjax_cache" / "tokens").glob("*.npy"))) >= 2


def test_second_prepare_reuses_caches_without_tokenizing(wiki_lm, wiki_data_dir, monkeypatch):
  def fail(*args, **kwargs):
    raise AssertionError("tokenized again instead of loading the cache")

  monkeypatch.setattr(lm, "encode_stream", fail)
  monkeypatch.setattr(lm.tokenizer_lib.spm.SentencePieceTrainer, "train", fail)
  again = lm.prepare_lm_data(data_config(tfds_data_dir=str(wiki_data_dir)), vocab_size=VOCAB)
  assert again.tokenizer.sha256 == wiki_lm.tokenizer.sha256
  np.testing.assert_array_equal(again.tokens("train"), wiki_lm.tokens("train"))


def test_other_vocab_size_never_reuses_the_token_cache(wiki_lm, wiki_data_dir):
  token_dir = wiki_data_dir / "tfjax_cache" / "tokens"
  before = set(token_dir.glob("*.npy"))
  large = lm.prepare_lm_data(data_config(tfds_data_dir=str(wiki_data_dir)), VOCAB + 256)
  assert large.tokenizer.model_path != wiki_lm.tokenizer.model_path
  assert len(set(token_dir.glob("*.npy")) - before) == 2  # train and validation, new files
  assert len(large.tokens("validation")) < len(wiki_lm.tokens("validation"))
  assert large.tokens("validation").max() >= VOCAB


# --- clear errors ---------------------------------------------------------------------------


WORDS = "the quick brown fox jumps over a lazy dog while seven wizards box nimbly".split()
# A tiny text dataset with an 'empty' split whose texts are all empty.
tiny_builder(
  "tiny_text",
  {"text": tfds.features.Text()},
  {
    "train": [{"text": " ".join(WORDS[i % 7 :] + WORDS[: i % 7]) + f" {i}."} for i in range(200)],
    "empty": [{"text": ""}] * 3,
  },
)


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tiny")
  tfds.builder("tiny_text", data_dir=str(data_dir)).download_and_prepare()
  return str(data_dir)


def tiny_config(tiny_data_dir, **overrides):
  config = dict(
    name="tiny_text", text_field="text", eval_split="train", tfds_data_dir=tiny_data_dir
  )
  return data_config(**{**config, **overrides})


def test_empty_eval_split_is_a_clear_error(tiny_data_dir):
  with pytest.raises(ValueError, match="split 'empty' of dataset 'tiny_text' has no text in field"):
    lm.prepare_lm_data(tiny_config(tiny_data_dir, eval_split="empty"), vocab_size=300)


def test_empty_train_split_is_a_clear_error(tiny_data_dir):
  with pytest.raises(ValueError, match="split 'empty' of dataset 'tiny_text' has no text in field"):
    lm.prepare_lm_data(tiny_config(tiny_data_dir, train_split="empty"), vocab_size=300)


def test_unknown_text_field_lists_the_features(tiny_data_dir):
  with pytest.raises(ValueError, match=r"no feature 'extract'; its features are \['text'\]"):
    lm.prepare_lm_data(tiny_config(tiny_data_dir, text_field="extract"), vocab_size=300)


def test_split_shorter_than_one_window_is_a_clear_error(tiny_data_dir):
  with pytest.raises(ValueError, match=r"split 'train' .* fewer than the 100001 of one window"):
    lm.prepare_lm_data(tiny_config(tiny_data_dir, seq_len=100_000), vocab_size=300)


# --- windows, iterators, eval batches -------------------------------------------------------


def window_starts(batches, seq_len):
  """The stream offset of each window, for a stream made by `np.arange`."""
  return [int(row[0]) // seq_len for b in batches for row in b["inputs"]]


def test_windows_are_slices_of_the_stream_and_targets_are_shifted_inputs():
  tokens = np.arange(1000, 1100, dtype=np.int32)  # 100 tokens -> (100 - 1) // 8 = 12 windows
  ds = lm.window_dataset(tokens, 8)
  assert len(ds) == 12
  for i in range(len(ds)):
    np.testing.assert_array_equal(ds[i]["inputs"], tokens[8 * i : 8 * i + 8])
    np.testing.assert_array_equal(ds[i]["targets"], tokens[8 * i + 1 : 8 * i + 9])
    assert ds[i]["inputs"].dtype == ds[i]["targets"].dtype == np.int32


def test_window_dataset_rejects_a_stream_shorter_than_one_window():
  assert len(lm.window_dataset(np.arange(9), 8)) == 1
  with pytest.raises(ValueError, match="fewer than the 9 of one window"):
    lm.window_dataset(np.arange(8), 8)


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def assert_same_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(x["inputs"], y["inputs"])
    np.testing.assert_array_equal(x["targets"], y["targets"])


def test_train_iterator_is_deterministic_from_seed_and_seeds_differ():
  tokens = np.arange(4097, dtype=np.int32)  # 256 windows of 16 + 1
  first = take(lm.train_iterator(tokens, 16, 8, seed=3), 5)
  assert_same_batches(first, take(lm.train_iterator(tokens, 16, 8, seed=3), 5))
  other = take(lm.train_iterator(tokens, 16, 8, seed=4), 5)
  assert window_starts(first, 16) != window_starts(other, 16)
  assert first[0]["inputs"].shape == first[0]["targets"].shape == (8, 16)


def test_each_epoch_is_a_fresh_permutation_of_all_windows():
  tokens = np.arange(64 * 4 + 1, dtype=np.int32)  # 64 windows of 4 + 1, 8 batches of 8
  starts = window_starts(take(lm.train_iterator(tokens, 4, 8, seed=0), 16), 4)
  epoch1, epoch2 = starts[:64], starts[64:]
  assert sorted(epoch1) == sorted(epoch2) == list(range(64))
  assert epoch1 != epoch2 and epoch1 != list(range(64))


def test_restoring_the_iterator_state_gives_the_same_next_batches():
  tokens = np.arange(40 * 16 + 1, dtype=np.int32)  # 40 windows: batches cross epochs
  iterator = lm.train_iterator(tokens, 16, 6, seed=1)
  take(iterator, 9)
  state = json.loads(json.dumps(iterator.get_state()))  # survives a JSON round trip
  expected = take(iterator, 10)
  restored = lm.train_iterator(tokens, 16, 6, seed=1)
  restored.set_state(state)
  assert_same_batches(take(restored, 10), expected)


def test_process_shards_are_disjoint_and_cover_every_window():
  tokens = np.arange(48 * 4 + 1, dtype=np.int32)  # 48 windows, 24 per process, 6 batches of 4
  shards = [
    window_starts(
      take(lm.train_iterator(tokens, 4, 4, seed=0, process_index=p, process_count=2), 6), 4
    )
    for p in range(2)
  ]
  assert len(set(shards[0])) == len(set(shards[1])) == 24
  assert not set(shards[0]) & set(shards[1])
  assert sorted(shards[0] + shards[1]) == list(range(48))


def test_eval_batches_are_the_first_windows_in_order():
  tokens = np.arange(41, dtype=np.int32)  # 10 windows of 4 + 1 -> 3 full batches of 3
  batches = lm.eval_batches(tokens, 4, 3, max_batches=2)
  assert window_starts(batches, 4) == list(range(6))
  np.testing.assert_array_equal(batches[1]["targets"][0], tokens[13:17])
  assert len(lm.eval_batches(tokens, 4, 3, max_batches=100)) == 3
  assert_same_batches(lm.eval_batches(tokens, 4, 3, 3), lm.eval_batches(tokens, 4, 3, 3))


# --- unigram baseline -----------------------------------------------------------------------


def test_unigram_perplexity_equals_a_hand_computation():
  # Add-one counts of train [0, 0, 1] over 3 symbols: p = (3/6, 2/6, 1/6); eval [0, 2, 2].
  expected = math.exp(-(math.log(3 / 6) + 2 * math.log(1 / 6)) / 3)
  eval_targets = np.array([[0, 2], [2, 2]])[:, 1:]  # any shape; here [[2], [2]]
  assert lm.unigram_perplexity([0, 0, 1], [0, 2, 2], 3) == pytest.approx(expected)
  assert lm.unigram_perplexity([0, 0, 1], eval_targets, 3) == pytest.approx(6.0)


def test_unigram_perplexity_of_uniform_counts_is_the_vocab_size():
  assert lm.unigram_perplexity(np.arange(10), np.arange(10), 10) == pytest.approx(10.0)


def test_unigram_perplexity_rejects_out_of_vocab_tokens():
  with pytest.raises(ValueError, match="vocab_size=3"):
    lm.unigram_perplexity([0, 3], [0], 3)
