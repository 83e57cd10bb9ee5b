"""Tests of the cached SentencePiece BPE tokenizer, trained on the real corpus (vocab 512)."""

import numpy as np
import pytest

from tfjax.data.tokenizers import sentencepiece as tokenizer_lib

VOCAB = 512
NAME = "wiki-train-extract"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tokenizers")


@pytest.fixture(scope="module")
def tok(cache_dir, split_texts):
  return tokenizer_lib.train_or_load_tokenizer(
    iter(split_texts["train"]), vocab_size=VOCAB, cache_dir=cache_dir, name=NAME
  )


def never_read():
  raise AssertionError("the texts were read: the tokenizer was retrained")
  yield  # pragma: no cover


def test_round_trip_on_real_extracts_including_non_ascii(tok, split_texts):
  texts = split_texts["validation"] + split_texts["test"]
  assert sum(any(ord(c) > 127 for c in t) for t in texts) > 100
  assert any("\n" in t for t in texts)
  for text in texts:
    assert tok.decode(tok.encode(text)) == text


def test_round_trip_of_characters_never_seen_uses_bytes_not_unk(tok):
  text = "Ωμέγα  東京タワー\n\ttabs and 🙂 emoji, 12345"
  ids = tok.encode(text)
  assert tok.unk_id not in ids
  assert tok.decode(ids) == text


def test_special_ids_and_vocab_size(tok):
  assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
  assert tok.vocab_size == VOCAB
  ids = tok.encode("The city of Paris is the capital of France.")
  assert all(4 <= i < VOCAB for i in ids)


def test_encode_batch_equals_encode_one_by_one(tok, split_texts):
  texts = split_texts["validation"][:50]
  assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]


def test_decode_skips_special_tokens_and_accepts_arrays(tok):
  ids = tok.encode("Hello world")
  assert tok.decode(np.array([tok.bos_id, *ids, tok.eos_id, tok.pad_id])) == "Hello world"


def test_cached_tokenizer_is_reused_not_retrained(tok, cache_dir):
  mtime = tok.model_path.stat().st_mtime_ns
  again = tokenizer_lib.train_or_load_tokenizer(
    never_read(), vocab_size=VOCAB, cache_dir=cache_dir, name=NAME
  )
  assert again.model_path == tok.model_path
  assert again.sha256 == tok.sha256
  assert tok.model_path.stat().st_mtime_ns == mtime


def test_different_vocab_size_gives_a_different_file(tok, cache_dir, split_texts):
  other = tokenizer_lib.train_or_load_tokenizer(
    iter(split_texts["train"]), vocab_size=VOCAB + 64, cache_dir=cache_dir, name=NAME
  )
  assert other.model_path != tok.model_path
  assert other.model_path.exists() and tok.model_path.exists()
  assert other.vocab_size == VOCAB + 64


def test_training_is_deterministic(tok, split_texts, tmp_path):
  again = tokenizer_lib.train_or_load_tokenizer(
    iter(split_texts["train"]), vocab_size=VOCAB, cache_dir=tmp_path, name=NAME
  )
  assert again.model_path.read_bytes() == tok.model_path.read_bytes()


def test_vocab_too_small_for_byte_fallback_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="vocab_size=100 is too small"):
    tokenizer_lib.train_or_load_tokenizer(["a b c"], vocab_size=100, cache_dir=tmp_path, name="x")
