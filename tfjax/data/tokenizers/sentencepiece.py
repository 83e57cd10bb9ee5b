"""SentencePiece BPE tokenizers, trained once on a corpus and cached on disk.

The model file name is derived from the corpus name and every training option (vocabulary size
included), so a changed option trains a new file instead of reusing a stale one. Training is
deterministic (one thread, fixed seed, no input shuffling) and loses no text: the normaliser is
the identity, whitespace is kept as is, and characters outside the vocabulary fall back to bytes.
"""

import hashlib
import io
import itertools
import os
import pathlib
import time
from collections.abc import Iterable, Sequence

import numpy as np
import sentencepiece as spm
from absl import logging

from tfjax.data import cache
from tfjax.data.tokenizers.base import Tokenizer

PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3
MODEL_FILE = "tokenizer.model"  # a workdir's copy of its model

# `special_tokens="bert"`: BERT's specials (Devlin et al. 2018, §3) and no BOS/EOS. [CLS], [SEP] and
# [MASK] are control symbols: they have ids but are never produced from text, and decode to "".
BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4

# Bump when the training recipe below changes in a way the options do not show.
_RECIPE_VERSION = 1


class SentencePieceTokenizer(Tokenizer):
  """A trained SentencePiece model: text <-> ids, plus the ids of its special tokens (those of
  `special_tokens="bos_eos"` or of `"bert"`; None for the others)."""

  def __init__(self, model_proto: bytes, model_path: str | os.PathLike | None = None):
    self._processor = spm.SentencePieceProcessor(model_proto=model_proto)
    self.model_path = None if model_path is None else pathlib.Path(model_path)
    # The content hash identifies the model: token caches are keyed on it.
    self.sha256 = hashlib.sha256(model_proto).hexdigest()

  @classmethod
  def load(cls, path: str | os.PathLike) -> "SentencePieceTokenizer":
    """The model at `path`; a file that is not a SentencePiece model raises ValueError."""
    try:
      return cls(pathlib.Path(path).read_bytes(), model_path=path)
    except RuntimeError as e:  # sentencepiece: "INTERNAL: ... ParseFromArray ..."
      raise ValueError(
        f"{path} is not a SentencePiece model (damaged, or another kind of file)"
      ) from e

  @property
  def vocab_size(self) -> int:
    return self._processor.get_piece_size()

  @property
  def pad_id(self) -> int | None:
    return _id_or_none(self._processor.pad_id())

  @property
  def unk_id(self) -> int:
    return self._processor.unk_id()

  @property
  def bos_id(self) -> int | None:
    return _id_or_none(self._processor.bos_id())

  @property
  def eos_id(self) -> int | None:
    return _id_or_none(self._processor.eos_id())

  @property
  def cls_id(self) -> int | None:
    return self._piece_id(BERT_SPECIAL_TOKENS[2])

  @property
  def sep_id(self) -> int | None:
    return self._piece_id(BERT_SPECIAL_TOKENS[3])

  @property
  def mask_id(self) -> int | None:
    return self._piece_id(BERT_SPECIAL_TOKENS[4])

  def _piece_id(self, piece: str) -> int | None:
    token_id = self._processor.piece_to_id(piece)  # unk_id for a piece it does not have
    return token_id if self._processor.id_to_piece(token_id) == piece else None

  def encode(self, text: str) -> list[int]:
    return self._processor.encode(text)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """Encodes many texts at once (SentencePiece spreads them over threads)."""
    return self._processor.encode(list(texts))

  def decode(self, ids: Sequence[int] | np.ndarray) -> str:
    """Text of `ids`; special tokens (pad, bos, eos) decode to nothing."""
    return self._processor.decode([int(i) for i in np.asarray(ids).reshape(-1)])

  def id_to_piece(self, token_id: int) -> str:
    return self._processor.id_to_piece(int(token_id))

  def serialized_model_proto(self) -> bytes:
    return self._processor.serialized_model_proto()

  def save(self, directory: str | os.PathLike) -> pathlib.Path:
    """Writes the model as `directory/tokenizer.model`, the file a workdir holds."""
    target = pathlib.Path(directory) / MODEL_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")  # a crash leaves the old file whole
    partial.write_bytes(self.serialized_model_proto())
    os.replace(partial, target)
    return target

  def __repr__(self) -> str:
    return f"SentencePieceTokenizer(vocab_size={self.vocab_size}, model_path={self.model_path})"


def _id_or_none(token_id: int) -> int | None:
  return None if token_id < 0 else token_id  # SentencePiece gives -1 for a disabled special


def training_options(
  vocab_size: int,
  *,
  max_sentences: int = 300_000,
  character_coverage: float = 0.9995,
  special_tokens: str = "bos_eos",
) -> dict[str, object]:
  """The SentencePiece trainer options of our BPE recipe; all of them name the cached file.

  `special_tokens` is "bos_eos" (pad, unk, bos, eos = 0..3, for GPT and seq2seq) or "bert"
  (BERT_SPECIAL_TOKENS = 0..4, no bos/eos).
  """
  if special_tokens == "bos_eos":
    specials: dict[str, object] = dict(pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID)
  elif special_tokens == "bert":
    pad, unk, *control = BERT_SPECIAL_TOKENS
    specials = dict(pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, pad_piece=pad, unk_piece=unk)
    specials["control_symbols"] = ",".join(control)  # ids 2, 3, 4, after pad and unk
  else:
    raise ValueError(f"special_tokens={special_tokens!r} is unknown; use 'bos_eos' or 'bert'")
  num_special = 4 if special_tokens == "bos_eos" else len(BERT_SPECIAL_TOKENS)
  if vocab_size < 256 + num_special:
    raise ValueError(
      f"vocab_size={vocab_size} is too small: byte fallback alone needs 256 pieces plus "
      f"{num_special} special tokens; choose vocab_size >= {256 + num_special} (e.g. 8192)"
    )
  # "bos_eos" adds no key, so the GPT tokenizers cached before this option keep their file names.
  return dict(
    model_type="bpe",
    vocab_size=int(vocab_size),
    **specials,
    byte_fallback=True,
    character_coverage=float(character_coverage),
    normalization_rule_name="identity",
    remove_extra_whitespaces=False,
    split_digits=True,
    input_sentence_size=int(max_sentences),
    shuffle_input_sentence=False,
    max_sentence_length=1 << 16,
    # One thread: BPE merges then do not depend on the machine's core count.
    num_threads=1,
    recipe_version=_RECIPE_VERSION,
  )


def tokenizer_path(
  cache_dir: str | os.PathLike, name: str, options: dict[str, object]
) -> pathlib.Path:
  """`<cache_dir>/<name>-bpe<vocab>-<hash of options>.model`."""
  stem = f"{name}-bpe{options['vocab_size']}"
  return cache.cache_path(cache_dir, stem, options, ".model", digest_length=12)


def train_or_load_tokenizer(
  texts: Iterable[str],
  *,
  vocab_size: int,
  cache_dir: str | os.PathLike,
  name: str,
  max_sentences: int = 300_000,
  character_coverage: float = 0.9995,
  special_tokens: str = "bos_eos",
) -> SentencePieceTokenizer:
  """Loads the cached tokenizer of `name` and these options, or trains it on `texts` and caches it.

  `texts` is consumed only when training, and at most `max_sentences` of it: pass a lazy
  iterable so a cache hit reads nothing. `name` should identify the corpus (dataset, version,
  split, field). `special_tokens`: see `training_options`.
  """
  options = training_options(
    vocab_size,
    max_sentences=max_sentences,
    character_coverage=character_coverage,
    special_tokens=special_tokens,
  )
  path = tokenizer_path(cache_dir, name, options)
  if path.exists():
    logging.info("Loading cached tokenizer %s", path)
    return SentencePieceTokenizer.load(path)

  logging.info("Training a %d-piece BPE tokenizer for %s", vocab_size, name)
  start = time.perf_counter()
  sentences = (t for t in itertools.islice(texts, max_sentences) if t)
  trainer_options = {k: v for k, v in options.items() if k != "recipe_version"}
  model = io.BytesIO()
  spm.set_random_generator_seed(0)
  try:
    spm.SentencePieceTrainer.train(
      sentence_iterator=sentences, model_writer=model, minloglevel=2, **trainer_options
    )
  except RuntimeError as e:
    raise ValueError(
      f"SentencePiece could not train a {vocab_size}-piece tokenizer on {name}: {e}. A corpus "
      "this small may need a smaller vocab_size."
    ) from e
  cache.write_atomically(path, lambda f: f.write(model.getvalue()))
  logging.info("Trained tokenizer %s in %.1fs", path, time.perf_counter() - start)
  return SentencePieceTokenizer(model.getvalue(), model_path=path)
