"""Write the GPT-1 tokenizer golden: a tiny BPE vocabulary in HF OpenAI GPT's format and the ids
transformers' `OpenAIGPTTokenizer` gives for awkward strings.

GPT-1's BPE (Radford et al. 2018, §4.1) lowercases, splits words off at whitespace and
punctuation, and marks each word's last symbol with "</w>". transformers 5 builds it on the
`tokenizers` library (tokenization_openai.py: BertNormalizer(lowercase=True), BertPreTokenizer,
BPE(end_of_word_suffix="</w>", unk_token="<unk>"), BPEDecoder), as tfjax does, so the ids are
also checked against an independent transcription of transformers 4's pure-Python path without
ftfy/spacy (BERT's BasicTokenizer, then `OpenAIGPTTokenizer.bpe`). Tests read only the files
written here and never need torch. Regenerate with

  pip install -e .[parity]        # transformers (torch is not needed here)
  python tests/golden/make_openai_gpt_tokenizer_golden.py

Outputs, in tests/golden/openai_gpt_tokenizer/:
  vocab.json, merges.txt   a BPE trained on CORPUS below by the `tokenizers` trainer (300
                           tokens, "<unk>" = 0; merges.txt starts "#version: 0.2"): the cases
                           hold many characters it lacks, so "<unk>" is exercised
  ids.json                 per case: text, ids, decoded (transformers' decode); and the
                           "<unk>"-in-text case read as plain text and as the special token
"""

import json
import tempfile
import unicodedata
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import OpenAIGPTTokenizer

OUT_DIR = Path(__file__).resolve().parent / "openai_gpt_tokenizer"
UNK = "<unk>"
VOCAB_SIZE = 1000  # more than CORPUS offers: every merge it has (300 tokens in all)
# Our own sentences (the BPE's training text): common words, so the cases below use merges.
CORPUS = [
  "The quick brown fox jumps over the lazy dog, and the dog does not mind.",
  "A language model reads a sequence of tokens and predicts the next one.",
  "We train the model on many books, then fine-tune it on each task.",
  "It's a small test: is it working? Yes, it is working well!",
  "There are 12 layers, 768 hidden units and 3072 units in each feed-forward layer.",
  "The words of the story were split into pieces by byte pair encoding.",
  "Hello world, hello again; goodbye world, goodbye for now.",
  "She said that they would come back in the morning with the others.",
  "Questions and answers, premises and hypotheses, sentences and their pairs.",
  "This is the last sentence of the corpus, and it ends here.",
]
CASES = [
  "Hello world! The quick brown fox jumps over the lazy dog.",
  "It's 3.14159, isn't it? I'd say 2,500 + 1e-9 = ~2500 (roughly); 100% sure...",
  "  two leading spaces, trailing spaces   ",
  "multiple    spaces\tand a tab\nnew line\n\n  indented line\r\nCRLF",
  "UPPER CASE and MiXeD CaSe WoRdS",
  "Herr Müller trinkt einen Café au lait; naïve façade, Ærøskøbing.",
  "日本語のテキスト、中文，한국어 — and Ελληνικά / русский.",
  "Emoji: 🙂👍🏽 and symbols € £ © ± § ¶",
  "user@host and a/b/c?q=1&r=2#frag",
  "don't won't can't shouldn't've y'all",
  "",
  "\x00control\x07chars\u200band zero\ufeffwidth\ufffd",
  "numbers 0123456789 and 1st 2nd 3rd 42nd",
  "hyphen-ated words—em dash – en dash … ellipsis",
  "tabs\tand\u00a0non-breaking\u3000ideographic\u2009thin spaces",
  "ALLCAPSWORDWITHOUTSPACES",
  "x",
  "!!!???...,,,",
  "supercalifragilisticexpialidocious",
  'quotes “curly” ‘single’ «guillemets» "straight" `back`',
  "İstanbul ǅemal Straße ﬁne e\u0301te",  # dotted I, titlecase digraph, ß, ligature, combining
]
SPECIAL_TEXT = "a<unk>b and <unk> alone, <UNK> too"


# --- the independent reference: transformers 4's OpenAIGPTTokenizer without ftfy/spacy --------


def _is_whitespace(c: str) -> bool:
  return c in " \t\n\r" or unicodedata.category(c) == "Zs"


def _is_control(c: str) -> bool:
  return c not in "\t\n\r" and unicodedata.category(c).startswith("C")


def _is_punctuation(c: str) -> bool:
  cp = ord(c)
  ascii_punct = 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126
  return ascii_punct or unicodedata.category(c).startswith("P")


def _is_chinese(cp: int) -> bool:
  ranges = [
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
  ]
  return any(lo <= cp <= hi for lo, hi in ranges)


def basic_tokenize(text: str) -> list[str]:
  """BERT's BasicTokenizer(do_lower_case=True): clean, space out CJK, lowercase, strip
  accents, split on whitespace and punctuation."""
  text = "".join(
    " " if _is_whitespace(c) else c for c in text if not (ord(c) in (0, 0xFFFD) or _is_control(c))
  )
  text = "".join(f" {c} " if _is_chinese(ord(c)) else c for c in text)
  tokens = []
  for token in unicodedata.normalize("NFC", text).split():
    token = unicodedata.normalize("NFD", token.lower())
    token = "".join(c for c in token if unicodedata.category(c) != "Mn")
    word = ""
    for c in token:
      if _is_punctuation(c):
        tokens += [word, c] if word else [c]
        word = ""
      else:
        word += c
    tokens += [word] if word else []
  return tokens


class SlowOpenAIGPT:
  """transformers 4's OpenAIGPTTokenizer.bpe and ids (unknown pieces -> "<unk>")."""

  def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]):
    self.encoder, self.ranks = vocab, {m: i for i, m in enumerate(merges)}
    self.bpe = lru_cache(maxsize=None)(self._bpe)

  def _bpe(self, token: str) -> tuple[str, ...]:
    word = (*token[:-1], token[-1] + "</w>")
    while len(word) > 1:
      pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
      first, second = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
      if (first, second) not in self.ranks:
        break
      merged, i = [], 0
      while i < len(word):
        if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
          merged.append(first + second)
          i += 2
        else:
          merged.append(word[i])
          i += 1
      word = tuple(merged)
    return word

  def encode(self, text: str) -> list[int]:
    pieces = [p for token in basic_tokenize(text) for p in self.bpe(token)]
    return [self.encoder.get(p, self.encoder[UNK]) for p in pieces]


# --- the files ------------------------------------------------------------------------------


def train_vocab(out_dir: Path) -> None:
  tokenizer = Tokenizer(models.BPE(unk_token=UNK, end_of_word_suffix="</w>"))
  tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
  tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  trainer = trainers.BpeTrainer(
    vocab_size=VOCAB_SIZE, special_tokens=[UNK], end_of_word_suffix="</w>", show_progress=False
  )
  tokenizer.train_from_iterator(CORPUS, trainer)
  out_dir.mkdir(parents=True, exist_ok=True)
  tokenizer.model.save(str(out_dir))


def main() -> None:
  train_vocab(OUT_DIR)
  vocab = json.loads((OUT_DIR / "vocab.json").read_text(encoding="utf-8"))
  lines = (OUT_DIR / "merges.txt").read_text(encoding="utf-8").split("\n")
  assert lines[0].startswith("#version"), lines[0]
  reference = SlowOpenAIGPT(vocab, [tuple(line.split()) for line in lines[1:] if line])
  with tempfile.TemporaryDirectory() as tmp:  # vocab.json + merges.txt only, no tokenizer.json
    for name in ("vocab.json", "merges.txt"):
      (Path(tmp) / name).write_bytes((OUT_DIR / name).read_bytes())
    hf = OpenAIGPTTokenizer.from_pretrained(tmp)
  assert hf.unk_token_id == vocab[UNK] == 0 and len(hf) == len(vocab), (hf.unk_token_id, len(hf))

  cases = []
  for text in CASES:
    ids = hf.encode(text, add_special_tokens=False)
    if ids != reference.encode(text):
      raise AssertionError(f"references disagree on {text!r}:\n  {ids}\n  {reference.encode(text)}")
    cases.append({"text": text, "ids": ids, "decoded": hf.decode(ids)})
  unknown = sum(i == vocab[UNK] for case in cases for i in case["ids"])
  assert unknown > 10, unknown  # the cases do exercise "<unk>"

  special_ids = hf.encode(SPECIAL_TEXT, add_special_tokens=False)  # "<unk>" read as the token
  segments = SPECIAL_TEXT.split(UNK)
  expected = reference.encode(segments[0])
  for segment in segments[1:]:
    expected += [vocab[UNK], *reference.encode(segment)]
  assert special_ids == expected, (special_ids, expected)
  golden = {
    "reference": "transformers.OpenAIGPTTokenizer and transformers 4's BasicTokenizer + bpe "
    "(agree on all cases)",
    "vocab_size": len(vocab),
    "unk_id": vocab[UNK],
    "cases": cases,
    "special_case": {
      "text": SPECIAL_TEXT,
      "ids_plain": reference.encode(SPECIAL_TEXT),
      "ids_allow_special": special_ids,
    },
  }
  text = json.dumps(golden, ensure_ascii=False, indent=1) + "\n"
  (OUT_DIR / "ids.json").write_text(text, encoding="utf-8")
  print(f"wrote {OUT_DIR} ({len(vocab)} tokens, {len(cases)} cases, {unknown} unknown pieces)")


if __name__ == "__main__":
  main()
