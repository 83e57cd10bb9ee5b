"""GPT-1's BPE tokenizer (Radford et al. 2018, §4.1), read from HF vocab files, as transformers'
`OpenAIGPTTokenizer` computes it.

HF OpenAI GPT checkpoints ship `vocab.json` + `merges.txt`. transformers 5 tokenizes them without
OpenAI's ftfy + spaCy pipeline: BERT's basic tokenization (clean the text, lowercase, strip
accents, split off whitespace, punctuation and CJK characters), then BPE where a word's last
symbol carries "</w>"; a symbol the vocabulary lacks becomes "<unk>". The same `tokenizers`
components are used here, so the ids are transformers' (tests/golden/openai_gpt_tokenizer).
Decoding joins symbols and turns "</w>" into a space: lowercased, spaced punctuation.
"""

from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

from tfjax.data.tokenizers import hf_bpe

UNK_TOKEN = "<unk>"
END_OF_WORD = "</w>"


class OpenAIGPTTokenizer(hf_bpe.BPETokenizer):
  """Text <-> GPT-1 token ids; picklable. Its one special token is "<unk>" (`unk_id`, None when
  the vocabulary has none: then text with a symbol it lacks cannot be encoded). GPT-1 has no
  pad, BOS or EOS; fine-tuning appends its start, delimiter and extract tokens to the model's
  vocabulary (`tfjax.models.gpt.add_tokens`), after the tokenizer's ids.

  `encode` reads "<unk>" in the text as plain characters unless `allow_special=True` (then it is
  `unk_id`, as transformers reads it).
  """

  special_token = UNK_TOKEN
  tokenizer_class = "OpenAIGPTTokenizer"
  out_of_range_hint = (
    "a model with added tokens (GPT-1 fine-tuning's start, delimiter, extract) or a padded "
    "vocabulary can produce them"
  )

  @property
  def unk_id(self) -> int | None:
    return self._special_id

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """`encode` of many texts at once (parallel in Rust), "<unk>" read as plain text."""
    try:
      return super().encode_batch(texts)
    except Exception as e:  # tokenizers raises a bare Exception for a missing unk token
      if self.unk_id is not None or UNK_TOKEN not in str(e):
        raise
      raise ValueError(
        f"the text holds a character this vocabulary lacks, and the vocabulary has no "
        f"{UNK_TOKEN!r} to stand for it; replace such characters before encoding"
      ) from None

  def decode(self, ids: Iterable[int]) -> str:
    """Text of `ids`: symbols joined, "</w>" a space (lowercase, as encoded)."""
    return super().decode(ids)


def load_openai_gpt_tokenizer(vocab_json: str | Path, merges_txt: str | Path) -> OpenAIGPTTokenizer:
  """GPT-1 tokenizer from `vocab.json` (token -> id) and `merges.txt` (ranked BPE merges)."""
  for path in (vocab_json, merges_txt):
    if not Path(path).is_file():
      raise FileNotFoundError(f"GPT-1 vocabulary file not found: {path}")
  bpe = models.BPE.from_file(
    str(vocab_json),
    str(merges_txt),
    unk_token=UNK_TOKEN,
    end_of_word_suffix=END_OF_WORD,
    continuing_subword_prefix="",
    fuse_unk=False,  # one "<unk>" per unknown symbol
  )
  tokenizer = Tokenizer(bpe)
  tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)  # + clean, CJK, accents
  tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tokenizer.decoder = decoders.BPEDecoder(suffix=END_OF_WORD)
  return OpenAIGPTTokenizer(tokenizer)


def openai_gpt_tokenizer_from_dir(path: str | Path) -> OpenAIGPTTokenizer:
  """Tokenizer of an HF OpenAI GPT model directory (the one holding config.json)."""
  files = hf_bpe.vocabulary_files(path, "an HF OpenAI GPT directory", "download them with it")
  return load_openai_gpt_tokenizer(*files)
