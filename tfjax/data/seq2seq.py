"""Sequence-to-sequence input pipeline: TFDS text pairs -> one shared SentencePiece vocabulary
-> cached token ids -> rows packed with several pairs -> grain batches of a fixed token count.

The paper batches "by approximate sequence length ... approximately 25000 source tokens and
25000 target tokens" (Vaswani et al. 2017, §5.1). We pack instead (as Flax's examples/wmt and
tensor2tensor do): pairs are laid end to end in rows of `max_len` tokens, each marked by a
segment id, so every batch is `batch_size * max_len` token slots with little padding, and every
step has the same shapes (one compilation, any parallel mode). The model keeps attention inside
each pair (tfjax.models.transformer).

A dataset is any TFDS dataset of text pairs. The source and target are the features named by
`data.source_field` and `data.target_field` (a document and its summary, an instruction and its
response), by default the languages `data.source_lang` and `data.target_lang` of a translation
dataset, whose examples are {language: text}: `gettext_translations/en-de` (offline,
tfjax.data.datasets.gettext_translations) or, online, `wmt14_translate/de-en`, ...
"""

import dataclasses
import time
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from tfjax.data import cache, pipeline
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
  """The shared tokenizer, and the texts and token ids of each split (ids cached on disk).

  `data_config` is `config.data`: name, tfds_data_dir, cache_dir, train_split, and the two sides
  (see the module docstring): source_field and target_field, or source_lang and target_lang.
  """

  def __init__(self, data_config: Any, vocab_size: int):
    cfg = data_config
    self.dataset = _prepare_dataset(cfg)
    sides = _sides(cfg)
    _check_sides(self.dataset, sides)
    (_, self.source_field), (_, self.target_field) = sides
    self._ids: dict[str, Pairs] = {}
    train_split = cfg.train_split
    self.dataset.check_not_empty(train_split, self._pairs_of_texts(train_split), "sentence pairs")

    def both_sides() -> Iterator[str]:  # one vocabulary for both sides (§5.1)
      for source, target in self._pairs_of_texts(train_split):
        yield source
        yield target

    self.tokenizer = tokenizer_lib.train_or_load_tokenizer(
      both_sides(),
      vocab_size=vocab_size,
      cache_dir=self.dataset.cache_dir / "tokenizers",
      name=f"{self.dataset.id}-{train_split}-{self.source_field}+{self.target_field}",
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
    empty = 0
    for example in self.dataset.examples(split):
      texts = [pipeline.as_text(example[f]) for f in (self.source_field, self.target_field)]
      if all(t.strip() for t in texts):
        yield texts[0], texts[1]
      else:
        empty += 1
    if empty:
      logging.warning("Skipped %d pairs with an empty side in split '%s'", empty, split)

  def _encode_split(self, split: str) -> Pairs:
    sides = [self.source_field, self.target_field]
    # "languages": the key the translation caches were named by; any two fields go there.
    key = dict(
      version=_TOKEN_CACHE_VERSION, languages=sides, tokenizer_sha256=self.tokenizer.sha256
    )
    path = self.dataset.split_cache_path("tokens", split, sides, key, ".npz")
    if not path.exists():
      start = time.perf_counter()
      sources, targets = self.texts(split)
      self.dataset.check_not_empty(split, sources, "sentence pairs")
      arrays = {
        **_ragged_to_arrays("source", self.tokenizer.encode_batch(sources)),
        **_ragged_to_arrays("target", self.tokenizer.encode_batch(targets)),
      }
      cache.write_atomically(path, lambda f: np.savez(f, **arrays))
      logging.info(
        "Tokenized %s %s: %d pairs in %.1fs -> %s",
        self.dataset.id,
        split,
        len(sources),
        time.perf_counter() - start,
        path,
      )
    with np.load(path) as arrays:
      return Pairs(_arrays_to_ragged(arrays, "source"), _arrays_to_ragged(arrays, "target"))


def _prepare_dataset(data_config: Any) -> pipeline.PreparedDataset:
  """The prepared dataset; an unknown dataset or language pair gets the list of pairs."""
  name = data_config.name
  try:
    return pipeline.prepare_dataset(data_config)
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


def _sides(data_config: Any) -> list[tuple[str, str]]:
  """(config key, feature) of the source and of the target: data.source_field and
  data.target_field where set, else the languages data.source_lang and data.target_lang."""
  keys = [
    f"{side}_field" if data_config.get(f"{side}_field") else f"{side}_lang"
    for side in ("source", "target")
  ]
  return [(key, data_config[key]) for key in keys]


def _check_sides(dataset: pipeline.PreparedDataset, sides: list[tuple[str, str]]) -> None:
  features = dataset.builder.info.features
  names = tuple(getattr(features, "languages", None) or features.keys())
  for key, field in sides:
    if field not in names:
      kind = "language" if key.endswith("_lang") else "feature"
      raise ValueError(
        f"data.{key}={field!r} is not a {kind} of dataset '{dataset.name}' (it has {names}); "
        "choose one of those"
      )
  (source_key, source), (target_key, target) = sides
  if source == target:
    raise ValueError(f"data.{source_key} and data.{target_key} are both {source!r}")


def _ragged_to_arrays(prefix: str, rows: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
  lengths = np.array([len(r) for r in rows], np.int64)
  flat = np.fromiter((t for r in rows for t in r), np.int32, count=int(lengths.sum()))
  return {f"{prefix}_ids": flat, f"{prefix}_offsets": np.concatenate([[0], np.cumsum(lengths)])}


def _arrays_to_ragged(arrays: Any, prefix: str) -> list[np.ndarray]:
  flat, offsets = arrays[f"{prefix}_ids"], arrays[f"{prefix}_offsets"]
  return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


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
  epoch = grain.MapDataset.source(rows).seed(seed).shuffle()
  return pipeline.train_iterator(epoch, batch_size, process_index, process_count, what="rows")


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
