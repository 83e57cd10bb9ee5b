"""What inference needs of a tokenizer: sentencepiece's and GPT-2's wrappers fit."""

from collections.abc import Sequence
from typing import Protocol


class TextTokenizer(Protocol):
  """Text <-> ids, no specials added by `encode`; decoding stops at `eos_id`."""

  @property
  def eos_id(self) -> int: ...

  def encode(self, text: str) -> list[int]: ...

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...

  def decode(self, ids: Sequence[int]) -> str: ...


class Seq2SeqTokenizer(TextTokenizer, Protocol):
  """A TextTokenizer whose `bos_id` starts every decoder input (sentencepiece's has one)."""

  @property
  def bos_id(self) -> int: ...
