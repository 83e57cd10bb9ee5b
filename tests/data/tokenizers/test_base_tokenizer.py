"""Every tokenizer gives the one Tokenizer interface, with its special ids or None."""

import pytest

from tfjax.data.tokenizers import sentencepiece as tokenizer_lib
from tfjax.data.tokenizers.base import Tokenizer
from tfjax.data.tokenizers.bert import (
  SentencePieceBertTokenizer,
  WordPieceTokenizer,
  find_offline_bert_vocab,
)
from tfjax.data.tokenizers.gpt2 import find_offline_gpt2_vocab, load_gpt2_tokenizer

SPECIALS = ("pad_id", "unk_id", "bos_id", "eos_id", "cls_id", "sep_id", "mask_id")
TEXTS = ["The river flows north.", "Paris is the capital of France."]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory, split_texts) -> dict[str, Tokenizer]:
  cache = tmp_path_factory.mktemp("base_tokenizers")
  train = lambda special_tokens: tokenizer_lib.train_or_load_tokenizer(
    iter(split_texts["train"][:2000]),
    vocab_size=512,
    cache_dir=cache,
    name="wiki",
    special_tokens=special_tokens,
  )
  return {
    "sentencepiece": train("bos_eos"),
    "sentencepiece_bert_specials": train("bert"),
    "sentencepiece_bert": SentencePieceBertTokenizer(train("bert")),
    "wordpiece": WordPieceTokenizer.from_vocab(find_offline_bert_vocab()),
    "gpt2": load_gpt2_tokenizer(*find_offline_gpt2_vocab()),
  }


# The special ids of each tokenizer (None: the vocabulary has no such token).
EXPECTED = {
  "sentencepiece": dict(pad_id=0, unk_id=1, bos_id=2, eos_id=3, cls_id=None, mask_id=None),
  "sentencepiece_bert_specials": dict(pad_id=0, unk_id=1, bos_id=None, cls_id=2, mask_id=4),
  "sentencepiece_bert": dict(pad_id=0, unk_id=1, bos_id=None, eos_id=None, cls_id=2, sep_id=3),
  "wordpiece": dict(pad_id=0, unk_id=100, bos_id=None, cls_id=101, sep_id=102, mask_id=103),
  "gpt2": dict(pad_id=None, unk_id=None, bos_id=None, eos_id=50256, cls_id=None, mask_id=None),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_tokenizer_is_a_tokenizer_with_its_special_ids(tokenizers, name):
  tokenizer = tokenizers[name]
  assert isinstance(tokenizer, Tokenizer)
  for special, expected in EXPECTED[name].items():
    assert getattr(tokenizer, special) == expected, special
  for special in SPECIALS:
    token_id = getattr(tokenizer, special)
    assert token_id is None or 0 <= token_id < tokenizer.vocab_size


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_encode_adds_no_special_token_and_batches_agree(tokenizers, name):
  tokenizer = tokenizers[name]
  specials = {getattr(tokenizer, s) for s in SPECIALS if s != "unk_id"} - {None}
  encoded = tokenizer.encode_batch(TEXTS)
  assert encoded == [tokenizer.encode(text) for text in TEXTS]
  for text, ids in zip(TEXTS, encoded, strict=True):
    assert ids and not specials & set(ids)
    assert tokenizer.decode(ids).lower() == text.lower()  # WordPiece lowercases
