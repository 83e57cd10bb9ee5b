"""The one tokenizer interface: text <-> token ids, and the ids of the special tokens.

SentencePiece (`SentencePieceTokenizer`), BERT's (`WordPieceTokenizer`,
`SentencePieceBertTokenizer`), GPT-2's (`GPT2Tokenizer`) and GPT-1's (`OpenAIGPTTokenizer`)
tokenizers all give it, so the example makers, decoders and pipelines take any of them. `encode`
and `encode_batch` add no special token: each caller adds the ones its format needs ([CLS] a
[SEP], BOS, EOS) by id. A special token that a vocabulary lacks has the id None: GPT-2 has only
EOS, GPT-1 only UNK, a BERT vocabulary no BOS or EOS, a SentencePiece model of ours either
BOS/EOS or BERT's five.
"""

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class Tokenizer(Protocol):
  """Text <-> ids, and the special ids (None where the vocabulary has no such token)."""

  pad_id: int | None = None
  unk_id: int | None = None
  bos_id: int | None = None
  eos_id: int | None = None
  cls_id: int | None = None
  sep_id: int | None = None
  mask_id: int | None = None

  @property
  def vocab_size(self) -> int:
    """Number of ids; a model may pad its embedding beyond it."""
    ...

  def encode(self, text: str) -> list[int]:
    """Ids of `text`, no special token added."""
    ...

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """`encode` of many texts at once."""
    ...

  def decode(self, ids: Sequence[int]) -> str:
    """Text of `ids` (each tokenizer says which special tokens it leaves out)."""
    ...
