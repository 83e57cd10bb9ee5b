"""Translation input pipeline: TFDS sentence pairs -> one shared SentencePiece vocabulary ->
cached token ids -> rows packed with several pairs -> grain batches of a fixed token count.

The paper batches "by approximate sequence length ... approximately 25000 source tokens and
25000 target tokens" (Vaswani et al. 2017, §5.1). We pack instead (as Flax's examples/wmt and
tensor2tensor do): pairs are laid end to end in rows of `max_len` tokens, each marked by a
segment id, so every batch is `batch_size * max_len` token slots with little padding, and every
step has the same shapes (one compilation, any parallel mode). The model keeps attention inside
each pair (tfjax.models.transformer).

A dataset is any TFDS translation dataset whose examples are {language: text}:
`gettext_translations/en-de` (offline, tfjax.data.datasets.gettext_translations) or, online,
`wmt14_translate/de-en`, `wmt17_translate/de-en`, ...
"""

import dataclasses
import hashlib
import json
import os
import pathlib
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from tfjax.data import pipeline
from tfjax.data.tokenizers import sentencepiece as tokenizer_lib

# Bump when the way a split becomes token ids changes.
_TOKEN_CACHE_VERSION = 1
PACKED_FEATURES = (
  "inputs",  # source ids, each pair ending with EOS
  "inputs_segmentation",  # 1, 2, ... per pair in the row; 0 = padding
  "inputs_position",  # position inside its own pair
  "decoder_inputs",  # BOS + target (the target shifted right)
  "targets",  # target + EOS
  "decoder_segmentation",
  "decoder_position",
)


@dataclasses.dataclass(frozen=True)
class Pairs:
  """Token ids of one split: `sources[i]` translates to `targets[i]` (no BOS/EOS added)."""

  sources: list[np.ndarray]
  targets: list[np.ndarray]

  def __len__(self) -> int:
    return len(self.sources)


class TranslationData:
  """The shared tokenizer, and the texts and token ids of each split (ids cached on disk)."""

  def __init__(self, data_config: Any, vocab_size: int):
    cfg = data_config
    self.source_lang, self.target_lang = cfg.source_lang, cfg.target_lang
    self._builder = _translation_builder(cfg.name, cfg.tfds_data_dir or None)
    _check_languages(cfg.name, self._builder, cfg.source_lang, cfg.target_lang)
    self._cache_dir = pathlib.Path(
      cfg.cache_dir or os.path.join(self._builder.data_dir_root, "tfjax_cache")
    )
    self.dataset_id = self._builder.info.full_name  # name/config/version
    self._ids: dict[str, Pairs] = {}
    train_split = cfg.train_split
    if not any(True for _ in self._pairs_of_texts(train_split)):
      raise ValueError(f"split '{train_split}' of dataset '{cfg.name}' has no sentence pairs")

    def both_sides() -> Iterator[str]:  # one vocabulary for both languages (§5.1)
      for source, target in self._pairs_of_texts(train_split):
        yield source
        yield target

    langs = f"{cfg.source_lang}+{cfg.target_lang}"
    self.tokenizer = tokenizer_lib.train_or_load_tokenizer(
      both_sides(),
      vocab_size=vocab_size,
      cache_dir=self._cache_dir / "tokenizers",
      name=f"{self.dataset_id}-{train_split}-{langs}",
    )

  def texts(self, split: str) -> tuple[list[str], list[str]]:
    """(sources, references) of a split, in order; pairs with an empty side left out."""
    pairs = list(self._pairs_of_texts(split))
    return [s for s, _ in pairs], [t for _, t in pairs]

  def ids(self, split: str) -> Pairs:
    """Token ids of a split's pairs (cached as .npz beside the TFDS data)."""
    if split not in self._ids:
      self._ids[split] = self._encode_split(split)
    return self._ids[split]

  def _pairs_of_texts(self, split: str) -> Iterator[tuple[str, str]]:
    """(source, target) texts; pairs with an empty side are skipped, and counted in the log."""
    try:
      source = self._builder.as_data_source(split=split)
    except ValueError as e:  # TFDS cannot open an empty slice such as "train[:0]"
      if "0 length" not in str(e):
        raise
      return
    empty = 0
    for start in range(0, len(source), pipeline.ENCODE_CHUNK):
      keys = list(range(start, min(start + pipeline.ENCODE_CHUNK, len(source))))
      for example in source.__getitems__(keys):
        texts = [_text(example[lang]) for lang in (self.source_lang, self.target_lang)]
        if all(t.strip() for t in texts):
          yield texts[0], texts[1]
        else:
          empty += 1
    if empty:
      logging.warning("Skipped %d pairs with an empty side in split '%s'", empty, split)

  def _encode_split(self, split: str) -> Pairs:
    key = dict(
      version=_TOKEN_CACHE_VERSION,
      dataset=self.dataset_id,
      split=split,
      languages=[self.source_lang, self.target_lang],
      tokenizer_sha256=self.tokenizer.sha256,
    )
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.dataset_id}-{split}")
    path = self._cache_dir / "tokens" / f"{stem}-{self.source_lang}-{self.target_lang}-{digest}.npz"
    if not path.exists():
      start = time.perf_counter()
      sources, targets = self.texts(split)
      if not sources:
        raise ValueError(f"split '{split}' of dataset '{self.dataset_id}' has no sentence pairs")
      arrays = {
        **_ragged_to_arrays("source", self.tokenizer.encode_batch(sources)),
        **_ragged_to_arrays("target", self.tokenizer.encode_batch(targets)),
      }
      _save_npz_atomically(path, arrays)
      logging.info(
        "Tokenized %s %s: %d pairs in %.1fs -> %s",
        self.dataset_id,
        split,
        len(sources),
        time.perf_counter() - start,
        path,
      )
    with np.load(path) as arrays:
      return Pairs(_arrays_to_ragged(arrays, "source"), _arrays_to_ragged(arrays, "target"))


def _text(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _translation_builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  """The prepared TFDS builder; an unknown dataset or language pair gets the list of pairs."""
  try:
    return pipeline.prepared_builder(name, data_dir)
  except (tfds.core.registered.DatasetNotFoundError, ValueError) as e:
    base = name.split("/")[0]
    try:
      pairs = [c.name for c in tfds.builder_cls(base).BUILDER_CONFIGS]
    except tfds.core.registered.DatasetNotFoundError:
      raise ValueError(
        f"data.name={name!r}: no TFDS dataset '{base}' ({e}); use e.g. "
        "'gettext_translations/en-de' (offline) or 'wmt14_translate/de-en'"
      ) from e
    if "/" in name and name.split("/")[1] not in pairs:
      raise ValueError(
        f"data.name={name!r}: '{base}' has no language pair '{name.split('/')[1]}'; its pairs "
        f"are {pairs}"
      ) from e
    raise


def _check_languages(name: str, builder: tfds.core.DatasetBuilder, source: str, target: str):
  features = builder.info.features
  languages = tuple(getattr(features, "languages", None) or features.keys())
  for side, lang in (("source_lang", source), ("target_lang", target)):
    if lang not in languages:
      raise ValueError(
        f"data.{side}={lang!r} is not a language of dataset '{name}' (it has {languages}); "
        "choose one of those"
      )
  if source == target:
    raise ValueError(f"data.source_lang and data.target_lang are both {source!r}")


def _ragged_to_arrays(prefix: str, rows: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
  lengths = np.array([len(r) for r in rows], np.int64)
  flat = np.fromiter((t for r in rows for t in r), np.int32, count=int(lengths.sum()))
  return {f"{prefix}_ids": flat, f"{prefix}_offsets": np.concatenate([[0], np.cumsum(lengths)])}


def _arrays_to_ragged(arrays: Any, prefix: str) -> list[np.ndarray]:
  flat, offsets = arrays[f"{prefix}_ids"], arrays[f"{prefix}_offsets"]
  return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def _save_npz_atomically(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


# ------------------------------------------------------------------------------ truncation


def count_too_long(
  ids: Sequence[Sequence[int]], max_tokens: int, *, what: str, allow: bool = True
) -> int:
  """How many sequences are longer than `max_tokens` (logged as cut); with `allow=False`, any
  is an error instead."""
  too_long = sum(len(x) > max_tokens for x in ids)
  if too_long and not allow:
    raise ValueError(
      f"{too_long} of {len(ids)} {what} are longer than {max_tokens} tokens; raise "
      "data.max_len (and model.max_len), or allow truncation (data.truncate=True)"
    )
  if too_long:
    logging.warning("Truncated %d of %d %s to %d tokens", too_long, len(ids), what, max_tokens)
  return too_long


# ------------------------------------------------------------------------------ packing


def pack_pairs(
  pairs: Pairs, max_len: int, bos_id: int, eos_id: int, *, truncate_long: bool = True
) -> dict[str, np.ndarray]:
  """Lays pairs end to end in rows of `max_len` tokens, in the given order.

  A pair takes len(source) + 1 slots of the source row (EOS) and len(target) + 1 of the target
  row (BOS in front of the decoder input, EOS behind the target); a pair that does not fit
  both rows of the current row starts the next one. Sentences longer than max_len - 1 tokens
  are cut (counted) or, with `truncate_long=False`, an error: a cut source still ends with EOS,
  but a cut target's last label is its true next token, not EOS — the model must not learn to
  stop where a sentence was cut. Returns PACKED_FEATURES, each int32 [num_rows, max_len].
  """
  if max_len < 2:
    raise ValueError(f"data.max_len={max_len} must be >= 2 (one token and EOS)")
  for what, ids in (("source sentences", pairs.sources), ("target sentences", pairs.targets)):
    count_too_long(ids, max_len - 1, what=what, allow=truncate_long)
  sources = [np.append(s[: max_len - 1], eos_id) for s in pairs.sources]
  targets = [np.concatenate([[bos_id], t[:max_len], [eos_id]]) for t in pairs.targets]
  rows: list[list[tuple[np.ndarray, np.ndarray]]] = []
  source_used = target_used = max_len + 1  # forces a first row
  for source, target in zip(sources, targets, strict=True):
    target_slots = min(len(target) - 1, max_len)
    if source_used + len(source) > max_len or target_used + target_slots > max_len:
      rows.append([])
      source_used = target_used = 0
    rows[-1].append((source, target))
    source_used += len(source)
    target_used += target_slots

  packed = {name: np.zeros((len(rows), max_len), np.int32) for name in PACKED_FEATURES}
  for r, row in enumerate(rows):
    s = t = 0
    for segment, (source, target) in enumerate(row, start=1):
      n, m = len(source), min(len(target) - 1, max_len)
      packed["inputs"][r, s : s + n] = source
      packed["inputs_segmentation"][r, s : s + n] = segment
      packed["inputs_position"][r, s : s + n] = np.arange(n)
      packed["decoder_inputs"][r, t : t + m] = target[:m]  # BOS, t_1, ...
      packed["targets"][r, t : t + m] = target[1 : m + 1]  # t_1, ..., EOS (or the cut's next)
      packed["decoder_segmentation"][r, t : t + m] = segment
      packed["decoder_position"][r, t : t + m] = np.arange(m)
      s, t = s + n, t + m
  return packed


class _Rows:
  """Random access to the rows of packed arrays, for grain."""

  def __init__(self, packed: dict[str, np.ndarray]):
    self._packed = packed
    self._len = len(next(iter(packed.values())))

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {name: array[index] for name, array in self._packed.items()}


def shuffled(pairs: Pairs, seed: int) -> Pairs:
  """The pairs in a fixed random order: packed rows then mix short and long sentences."""
  order = np.random.default_rng(seed).permutation(len(pairs))
  return Pairs([pairs.sources[i] for i in order], [pairs.targets[i] for i in order])


def train_iterator(
  packed: dict[str, np.ndarray],
  batch_size: int,
  seed: int,
  process_index: int = 0,
  process_count: int = 1,
) -> grain.DatasetIterator:
  """Endless batches of packed rows, in a fresh order each epoch; checkpointable.

  Process `i` takes rows `i::process_count` of each epoch's order; `batch_size` is the
  per-process batch.
  """
  rows = _Rows(packed)
  if len(rows) < process_count * batch_size:
    raise ValueError(
      f"the training data packs into {len(rows)} rows, fewer than one batch of {batch_size} "
      f"rows per process ({process_count}); lower train.batch_size or data.max_len"
    )
  ds = grain.MapDataset.source(rows).seed(seed).shuffle()[process_index::process_count]
  ds = ds.repeat().batch(batch_size, drop_remainder=True)
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=0)))


def eval_batches(
  packed: dict[str, np.ndarray], batch_size: int, max_batches: int
) -> list[dict[str, np.ndarray]]:
  """The first `max_batches` batches of rows, the last one filled up with all-padding rows
  (segment 0: no weight), so every pair of a small split counts."""
  num_rows = len(next(iter(packed.values())))
  if num_rows == 0:
    raise ValueError("the evaluation split has no sentence pairs")
  padded = -(-num_rows // batch_size) * batch_size
  packed = {k: np.pad(v, ((0, padded - num_rows), (0, 0))) for k, v in packed.items()}
  batches = [
    {k: v[i : i + batch_size] for k, v in packed.items()} for i in range(0, padded, batch_size)
  ]
  return batches[:max_batches]
