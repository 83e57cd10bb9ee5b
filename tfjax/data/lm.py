"""Language-model input pipeline: TFDS text -> cached token stream -> grain batches of windows.

Each split is tokenized once into one flat int32 stream (documents joined by EOS) and cached as
`.npy`, memory-mapped on later runs, so the input pipeline is a few numpy slices per batch.
Training batches are non-overlapping windows of `seq_len + 1` tokens, shuffled by grain from a
seed and checkpointable through the iterator's `get_state()` / `set_state()`.
"""

import time
from collections.abc import Callable, Iterator
from typing import Any

import grain
import numpy as np
from absl import logging

from tfjax.data import cache, pipeline
from tfjax.data.tokenizers import sentencepiece as tokenizer_lib

# Bump when the way a split becomes a token stream changes.
_TOKEN_CACHE_VERSION = 1


class LMData:
  """A tokenizer and the token stream of each split of one text dataset (cached on disk)."""

  def __init__(
    self,
    tokenizer: tokenizer_lib.SentencePieceTokenizer,
    tokenize_split: Callable[[str], np.ndarray],
  ):
    self.tokenizer = tokenizer
    self._tokenize_split = tokenize_split
    self._tokens: dict[str, np.ndarray] = {}

  def tokens(self, split: str) -> np.ndarray:
    """The split as one int32 stream, documents each followed by EOS (memory-mapped)."""
    if split not in self._tokens:
      self._tokens[split] = self._tokenize_split(split)
    return self._tokens[split]


def prepare_lm_data(data_config: Any, vocab_size: int) -> LMData:
  """Builds the dataset, trains or loads the tokenizer, and tokenizes the train and eval splits.

  `data_config` is `config.data` (name, text_field, train_split, eval_split, tfds_data_dir,
  cache_dir, seq_len). Everything is cached, so a second call only memory-maps files.
  """
  text_field = data_config.text_field
  dataset = pipeline.prepare_dataset(data_config, {"text_field": text_field})
  check_has_text = lambda split: dataset.check_not_empty(
    split, dataset.texts(split, text_field), f"text in field '{text_field}'"
  )
  train_split = data_config.train_split
  check_has_text(train_split)
  tokenizer = tokenizer_lib.train_or_load_tokenizer(
    dataset.texts(train_split, text_field),
    vocab_size=vocab_size,
    cache_dir=dataset.cache_dir / "tokenizers",
    name=f"{dataset.id}-{train_split}-{text_field}",
  )

  def tokenize_split(split: str) -> np.ndarray:
    key = dict(
      version=_TOKEN_CACHE_VERSION, text_field=text_field, tokenizer_sha256=tokenizer.sha256
    )
    path = dataset.split_cache_path("tokens", split, [text_field], key, ".npy")
    if not path.exists():
      check_has_text(split)
      start = time.perf_counter()
      stream = encode_stream(tokenizer, dataset.texts(split, text_field))
      cache.write_atomically(path, lambda f: np.save(f, stream))
      logging.info(
        "Tokenized %s split %s: %d tokens in %.1fs -> %s",
        dataset.id,
        split,
        stream.size,
        time.perf_counter() - start,
        path,
      )
    return np.load(path, mmap_mode="r")

  data = LMData(tokenizer, tokenize_split)
  seq_len = getattr(data_config, "seq_len", None)
  for split in dict.fromkeys((train_split, data_config.eval_split)):
    tokens = data.tokens(split)
    if seq_len is not None:
      _check_long_enough(tokens, seq_len, f"split '{split}' of dataset '{dataset.name}'")
  return data


def encode_stream(
  tokenizer: tokenizer_lib.SentencePieceTokenizer, texts: Iterator[str]
) -> np.ndarray:
  """Tokenizes `texts` into one int32 stream, each document followed by EOS (empty ones skipped)."""
  chunks, batch = [], []
  eos = np.array([tokenizer.eos_id], np.int32)

  def flush() -> None:
    for ids in tokenizer.encode_batch(batch):
      chunks.extend((np.asarray(ids, np.int32), eos))
    batch.clear()

  for text in texts:
    if text:
      batch.append(text)
      if len(batch) == pipeline.ENCODE_CHUNK:
        flush()
  flush()
  return np.concatenate(chunks) if chunks else np.zeros((0,), np.int32)


class _Windows:
  """Random access to non-overlapping windows of `seq_len + 1` tokens (stride `seq_len`)."""

  def __init__(self, tokens: np.ndarray, seq_len: int):
    self._tokens = tokens
    self._seq_len = seq_len

  def __len__(self) -> int:
    return (len(self._tokens) - 1) // self._seq_len

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if not 0 <= index < len(self):
      raise IndexError(f"window {index} out of range [0, {len(self)})")
    start = index * self._seq_len
    window = np.array(self._tokens[start : start + self._seq_len + 1], dtype=np.int32)
    return {"inputs": window[:-1], "targets": window[1:]}  # [seq_len] each


def window_dataset(tokens: np.ndarray, seq_len: int) -> grain.MapDataset:
  """Windows of the stream as {"inputs", "targets"}: int32[seq_len], targets = inputs shifted."""
  _check_long_enough(tokens, seq_len, "the token stream")
  return grain.MapDataset.source(_Windows(tokens, seq_len))


def train_iterator(
  tokens: np.ndarray,
  seq_len: int,
  batch_size: int,
  seed: int,
  process_index: int = 0,
  process_count: int = 1,
) -> grain.DatasetIterator:
  """Endless shuffled batches of windows for this process; checkpointable (`get_state()`).

  The windows are shuffled globally from `seed` (a fresh order each epoch), and process `i`
  takes windows `i::process_count` of that order, so processes never share a window within an
  epoch. `batch_size` is the per-process batch size; incomplete batches are dropped.
  """
  windows = window_dataset(tokens, seq_len)
  return pipeline.train_iterator(
    windows.seed(seed).shuffle(),
    batch_size,
    process_index,
    process_count,
    what=f"windows of {seq_len + 1} tokens",
    fix="use a smaller seq_len or a larger split",
  )


def eval_batches(
  tokens: np.ndarray, seq_len: int, batch_size: int, max_batches: int
) -> list[dict[str, np.ndarray]]:
  """The first `max_batches` full batches of windows, in stream order (fewer if the split is
  short): the same tokens on every evaluation."""
  batches = pipeline.first_batches(window_dataset(tokens, seq_len), batch_size, max_batches)
  if not batches:
    raise ValueError(
      f"the token stream ({len(tokens)} tokens) holds fewer than batch_size={batch_size} windows "
      f"of {seq_len + 1} tokens; lower train.batch_size or data.seq_len"
    )
  return batches


def unigram_perplexity(train_tokens: np.ndarray, eval_tokens: np.ndarray, vocab_size: int) -> float:
  """Perplexity of `eval_tokens` under an add-one smoothed unigram model fitted on `train_tokens`.

  A floor any language model must beat: pass the eval batches' targets, the tokens the model is
  scored on.
  """
  train_tokens = np.asarray(train_tokens).reshape(-1)
  eval_tokens = np.asarray(eval_tokens).reshape(-1)
  for what, t in (("train", train_tokens), ("eval", eval_tokens)):
    if t.size and (t.min() < 0 or t.max() >= vocab_size):
      raise ValueError(f"{what} tokens must lie in [0, vocab_size={vocab_size})")
  if eval_tokens.size == 0:
    raise ValueError("eval_tokens is empty")
  counts = np.bincount(train_tokens, minlength=vocab_size).astype(np.float64)
  log_probs = np.log(counts + 1.0) - np.log(train_tokens.size + vocab_size)
  return float(np.exp(-log_probs[eval_tokens].mean()))


def _check_long_enough(tokens: np.ndarray, seq_len: int, what: str) -> None:
  if seq_len < 1:
    raise ValueError(f"seq_len={seq_len} must be positive")
  if len(tokens) < seq_len + 1:
    raise ValueError(
      f"{what} has {len(tokens)} tokens, fewer than the {seq_len + 1} of one window "
      f"(seq_len + 1); use a smaller seq_len or a larger split"
    )
