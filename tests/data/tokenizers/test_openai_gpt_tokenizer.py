"""GPT-1 tokenizer: ids and decoded text equal transformers' OpenAIGPTTokenizer's (golden), the
"<unk>" rules, clear errors."""

import json
import pickle
import shutil
from pathlib import Path

import pytest

from tfjax.data.tokenizers.base import Tokenizer
from tfjax.data.tokenizers.openai_gpt import (
  OpenAIGPTTokenizer,
  load_openai_gpt_tokenizer,
  openai_gpt_tokenizer_from_dir,
)

GOLDEN_DIR = Path(__file__).parents[2] / "golden" / "openai_gpt_tokenizer"
GOLDEN = json.loads((GOLDEN_DIR / "ids.json").read_text(encoding="utf-8"))
CASES = GOLDEN["cases"]


@pytest.fixture(scope="module")
def gpt1() -> OpenAIGPTTokenizer:
  return openai_gpt_tokenizer_from_dir(GOLDEN_DIR)


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_encode_and_decode_match_transformers(gpt1: OpenAIGPTTokenizer, case: dict):
  assert gpt1.encode(case["text"]) == case["ids"]
  assert gpt1.decode(case["ids"]) == case["decoded"]


def test_encode_batch_matches_encode_and_survives_pickling(gpt1: OpenAIGPTTokenizer):
  texts = [case["text"] for case in CASES]
  assert gpt1.encode_batch(texts) == [case["ids"] for case in CASES]
  assert pickle.loads(pickle.dumps(gpt1)).encode_batch(texts) == gpt1.encode_batch(texts)


def test_it_is_a_tokenizer_whose_one_special_is_unk(gpt1: OpenAIGPTTokenizer):
  assert isinstance(gpt1, Tokenizer)
  assert (gpt1.vocab_size, gpt1.unk_id) == (GOLDEN["vocab_size"], GOLDEN["unk_id"])
  others = ("pad_id", "bos_id", "eos_id", "cls_id", "sep_id", "mask_id")
  assert all(getattr(gpt1, name) is None for name in others)


def test_unk_in_text_is_plain_unless_allowed(gpt1: OpenAIGPTTokenizer):
  case = GOLDEN["special_case"]
  assert gpt1.encode(case["text"]) == case["ids_plain"]
  assert gpt1.encode(case["text"], allow_special=True) == case["ids_allow_special"]


def test_a_vocabulary_without_unk_encodes_what_it_knows_and_refuses_the_rest(tmp_path: Path):
  vocab = json.loads((GOLDEN_DIR / "vocab.json").read_text(encoding="utf-8"))
  del vocab["<unk>"]  # GPT-1's own vocab.json has no "<unk>"
  vocab = {token: i for i, token in enumerate(vocab)}
  (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
  shutil.copy(GOLDEN_DIR / "merges.txt", tmp_path / "merges.txt")
  tokenizer = openai_gpt_tokenizer_from_dir(tmp_path)
  assert tokenizer.unk_id is None and tokenizer.vocab_size == GOLDEN["vocab_size"] - 1
  assert tokenizer.encode("Hello world") == [vocab["hello</w>"], vocab["world</w>"]]
  with pytest.raises(ValueError, match="lacks, and the vocabulary has no '<unk>'"):
    tokenizer.encode("hello €")


def test_decode_rejects_ids_outside_the_vocabulary(gpt1: OpenAIGPTTokenizer):
  with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 300\); a model with added"):
    gpt1.decode([1, 300])


def test_missing_files_are_named(tmp_path: Path):
  with pytest.raises(FileNotFoundError, match="model directory not found"):
    openai_gpt_tokenizer_from_dir(tmp_path / "nope")
  shutil.copy(GOLDEN_DIR / "vocab.json", tmp_path / "vocab.json")
  with pytest.raises(FileNotFoundError, match=r"has no merges\.txt; an HF OpenAI GPT directory"):
    openai_gpt_tokenizer_from_dir(tmp_path)
  with pytest.raises(FileNotFoundError, match="GPT-1 vocabulary file not found: .*merges.txt"):
    load_openai_gpt_tokenizer(tmp_path / "vocab.json", tmp_path / "merges.txt")
