"""What GPT-2's and GPT-1's tokenizers share: a `tokenizers` BPE over an HF checkpoint's
vocab.json + merges.txt with one special token, and those files written back (a workdir keeps
the tokenizer it was fine-tuned with)."""

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer

from tfjax.data.tokenizers import base

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"  # names the class, as HF directories do


class BPETokenizer(base.Tokenizer):
  """Text <-> ids of an HF BPE vocabulary; picklable, so data-loader workers can hold one.

  A subclass names its one special token (`special_token`, whose id may be None) and its HF
  class (`tokenizer_class`). `encode` reads the special token in the text as plain characters
  unless `allow_special=True`, so user text cannot inject one.
  """

  special_token: str
  tokenizer_class: str
  out_of_range_hint = "a model with a padded vocabulary can sample them"

  def __init__(self, tokenizer: Tokenizer):
    self._tokenizer = tokenizer
    self._special_id = tokenizer.token_to_id(self.special_token)
    self._vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

  @property
  def vocab_size(self) -> int:
    """Number of ids; a model may have more (a padded table, fine-tuning's added tokens)."""
    return self._vocab_size

  def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
    """Token ids of `text`, nothing added; `allow_special` maps the special token to its id."""
    if not allow_special or self._special_id is None:
      return self.encode_batch([text])[0]
    # transformers splits the special token out first, then encodes each piece.
    pieces = self.encode_batch(text.split(self.special_token))
    ids = pieces[0]
    for piece in pieces[1:]:
      ids.append(self._special_id)
      ids.extend(piece)
    return ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """`encode` of many texts at once (parallel in Rust), special tokens read as plain text."""
    encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
    return [encoding.ids for encoding in encodings]

  def decode(self, ids: Iterable[int]) -> str:
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < self._vocab_size]
    if bad:
      raise ValueError(
        f"token ids {bad[:5]} are outside the vocabulary [0, {self._vocab_size}); "
        f"{self.out_of_range_hint}: mask logits >= vocab_size before sampling"
      )
    return self._tokenizer.decode(ids, skip_special_tokens=False)

  def save(self, directory: str | Path) -> Path:
    """Writes vocab.json + merges.txt into `directory` with a tokenizer_config.json naming the
    HF class, so the directory reloads it; returns the config file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    self._tokenizer.model.save(str(directory))  # vocab.json, merges.txt
    target = directory / TOKENIZER_CONFIG_FILE
    target.write_text(json.dumps({"tokenizer_class": self.tokenizer_class}) + "\n")
    return target


def vocabulary_files(directory: str | Path, what: str, fix: str) -> tuple[Path, Path]:
  """(vocab.json, merges.txt) of a model directory; a missing one names `what` needs both and
  `fix`."""
  directory = Path(directory)
  if not directory.is_dir():
    raise FileNotFoundError(f"model directory not found: {directory}")
  missing = [name for name in (VOCAB_FILE, MERGES_FILE) if not (directory / name).is_file()]
  if missing:
    raise FileNotFoundError(
      f"{directory} has no {' or '.join(missing)}; {what} needs both {VOCAB_FILE} and "
      f"{MERGES_FILE}: {fix}"
    )
  return directory / VOCAB_FILE, directory / MERGES_FILE
