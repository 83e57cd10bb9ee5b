"""What the example makers share: a TFDS dataset prepared once and read split by split, and the
grain iterators over their examples.

A dataset is prepared once as array_record and read with `tfds.data_source`, without TensorFlow.
Training batches come from one order per epoch, process `i` taking elements `i::process_count`
of it, so processes never share an element within an epoch; the iterator is checkpointable
(`get_state()` / `set_state()`), random augmentation included. Examples held in memory (text
classification, images) are read through one protocol, `Examples`.
"""

import contextlib
import dataclasses
import io
import os
import pathlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import grain
import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from tensorflow_datasets.core.utils import tqdm_utils

from tfjax.data import cache, datasets  # noqa: F401  (datasets registers the TFDS builders)

ENCODE_CHUNK = 1024  # examples per data-source read, and per encode_batch call of the makers
T = TypeVar("T")


def prepared_builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  """The TFDS builder of `name`, prepared once as array_record (readable without TensorFlow)."""
  builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  # TFDS prints and draws progress bars while preparing; the library only logs.
  start = time.perf_counter()
  out = io.StringIO()
  try:
    with contextlib.redirect_stdout(out), _no_tfds_progress_bar():
      builder.download_and_prepare()
  except OSError as e:
    if e.errno not in cache.NOT_WRITABLE:
      raise
    where = data_dir or f"{builder.data_dir_root} (the TFDS default)"
    raise PermissionError(
      f"dataset '{name}' is not prepared in {where} yet, and TFDS cannot write there "
      f"({e.strerror}: {e.filename}); choose a writable data.tfds_data_dir (it is prepared once "
      "there), or prepare it in this one as a user who can write it"
    ) from e
  if out.getvalue().strip():
    logging.info("%s (%.1fs)", out.getvalue().strip(), time.perf_counter() - start)
  file_format = builder.info.file_format
  if file_format is not None and str(getattr(file_format, "value", file_format)) != "array_record":
    raise ValueError(
      f"dataset '{name}' in {builder.data_dir} was prepared as {file_format}, which "
      "tfds.data_source cannot read; prepare it again with file_format='array_record' in another "
      "tfds_data_dir"
    )
  return builder


@contextlib.contextmanager
def _no_tfds_progress_bar() -> Iterator[None]:
  was_active = getattr(tqdm_utils, "_active", True)
  tfds.display_progress_bar(False)
  try:
    yield
  finally:
    tfds.display_progress_bar(was_active)


def encode_in_chunks(encode: Callable[[list[str]], list[T]], texts: Sequence[str]) -> list[T]:
  """`encode(texts)`, called on ENCODE_CHUNK texts at a time (a tokenizer's batch stays small)."""
  encoded: list[T] = []
  for start in range(0, len(texts), ENCODE_CHUNK):
    encoded.extend(encode(list(texts[start : start + ENCODE_CHUNK])))
  return encoded


def as_text(value: Any) -> str:
  """A TFDS text feature (bytes) as str."""
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@dataclasses.dataclass(frozen=True)
class PreparedDataset:
  """A prepared TFDS dataset, read split by split, and the directory of its caches."""

  name: str  # as configured: name[/config]
  builder: tfds.core.DatasetBuilder
  cache_dir: pathlib.Path

  @property
  def id(self) -> str:
    """name[/config]/version: what the caches of its splits are keyed on."""
    return self.builder.info.full_name

  def split_cache_path(
    self, kind: str, split: str, names: Sequence[str], key: Mapping[str, Any], suffix: str = ""
  ) -> pathlib.Path:
    """`<cache_dir>/<kind>/<id>-<split>-<names>-<digest>`: a cache of `split`, keyed on the
    dataset, the split and `key` (recipe version, fields, tokenizer hash)."""
    stem = "-".join([self.id, split, *names])
    key = {"dataset": self.id, "split": split, **key}
    return cache.cache_path(self.cache_dir / kind, stem, key, suffix)

  def examples(self, split: str) -> Iterator[dict[str, Any]]:
    """The examples of `split` ("train", "train[:10%]", "train+validation"), in data-source
    order; an empty slice such as "train[:0]" has none."""
    available = list(self.builder.info.splits.keys())
    if any(part.split("[")[0].strip() not in available for part in split.split("+")):
      raise ValueError(f"dataset '{self.name}' has no split '{split}'; its splits are {available}")
    try:
      source = self.builder.as_data_source(split=split)
    except ValueError as e:  # TFDS cannot open an empty slice such as "train[:0]"
      if "0 length" not in str(e):
        raise
      return
    for start in range(0, len(source), ENCODE_CHUNK):
      yield from source.__getitems__(list(range(start, min(start + ENCODE_CHUNK, len(source)))))

  def texts(self, split: str, field: str) -> Iterator[str]:
    """The text feature `field` of each example of `split`, in order."""
    return (as_text(example[field]) for example in self.examples(split))

  def check_not_empty(self, split: str, items: Iterable[Any], what: str) -> None:
    """Raises an error naming the split unless one of `items` (e.g. its texts) is truthy."""
    if not any(items):
      raise ValueError(f"split '{split}' of dataset '{self.name}' has no {what}")


def prepare_dataset(data_config: Any, fields: Mapping[str, str] | None = None) -> PreparedDataset:
  """The dataset of `config.data` (name, tfds_data_dir, cache_dir: "" for the defaults), prepared.

  `fields` maps config keys to the features they name ({"text_field": "extract"}); a feature the
  dataset lacks is an error that lists the features. The caches go to `cache_dir`, by default
  `<tfds data dir>/tfjax_cache`.
  """
  name = data_config.name
  builder = prepared_builder(name, data_config.tfds_data_dir or None)
  features = list(builder.info.features.keys())
  for key, field in (fields or {}).items():
    if field and field not in features:
      raise ValueError(
        f"dataset '{name}' has no feature '{field}'; its features are {features}. Set "
        f"config.data.{key} to one of them"
      )
  cache_dir = data_config.get("cache_dir") or os.path.join(builder.data_dir_root, "tfjax_cache")
  return PreparedDataset(name, builder, pathlib.Path(cache_dir))


# --- grain iterators ---------------------------------------------------------------------------

# A random transformation of one element, given a generator drawn for that element.
Augment = Callable[[Any, np.random.Generator], Any]


def train_iterator(
  epoch: grain.MapDataset,
  batch_size: int,
  process_index: int = 0,
  process_count: int = 1,
  *,
  what: str = "examples",
  fix: str = "use a larger train split",
  augment: Augment | None = None,
  augment_seed: int = 0,
) -> grain.DatasetIterator:
  """Endless batches of `epoch`'s elements for this process; checkpointable.

  `epoch` is one epoch in its order: shuffled by the caller (`ds.seed(seed).shuffle()` gives a
  fresh order each epoch). Process `i` takes elements `i::process_count`; `batch_size` is per
  process; incomplete batches are dropped, so batches run across epochs. `what` names the
  elements and `fix` the remedy when there are fewer elements than processes.

  `augment(element, rng)`, if given, transforms each element with a generator drawn from
  (`augment_seed`, the process, the element's position in the endless stream): a new draw every
  epoch, the same draws after `set_state()`, which restores the position alone.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} must be in [0, {process_count})")
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size} must be positive")
  if len(epoch) < process_count:
    raise ValueError(f"{len(epoch)} {what} cannot be shared by {process_count} processes; {fix}")
  ds = epoch[process_index::process_count].repeat()
  if augment is not None:
    # After the repeat, grain keys each element's generator on its index in the endless stream,
    # not in its epoch; the process enters the seed so processes draw independently.
    seed = np.random.SeedSequence([augment_seed, process_index]).generate_state(1)[0]
    ds = ds.random_map(augment, seed=int(seed))
  ds = ds.batch(batch_size, drop_remainder=True)
  # Elements are numpy slices or made in the calling thread: reading threads would only
  # contend, and the iterator state is the position alone.
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=0)))


class Examples(Protocol):
  """Encoded examples held in memory, row i being example i (`ClassificationExamples`,
  `GPTExamples`, `ImageExamples`: `ArrayExamples`): what `examples_train_iterator` and
  `eval_batches` read."""

  def __len__(self) -> int: ...

  def rows(self, indices: Any) -> dict[str, np.ndarray]:
    """The examples at `indices` (an int or an index array) as a batch, weights 1."""
    ...


class ArrayExamples:
  """`Examples` held as a dataclass of arrays with one row per example and a "label": `rows`
  takes those rows of every array field (other fields, such as counts, stay out)."""

  label: np.ndarray

  def __len__(self) -> int:
    return len(self.label)

  def rows(self, indices: Any) -> dict[str, np.ndarray]:
    """The examples at `indices` (an int or an index array) as a batch, weights 1."""
    batch = {
      field.name: getattr(self, field.name)[indices]
      for field in dataclasses.fields(self)
      if isinstance(getattr(self, field.name), np.ndarray)
    }
    return {**batch, "weights": np.ones(np.shape(batch["label"]), np.float32)}


class RowSource:
  """Random access to examples as dicts (their `rows(i)`), a grain source."""

  def __init__(self, examples: Examples):
    self._examples = examples

  def __len__(self) -> int:
    return len(self._examples)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if not 0 <= index < len(self):
      raise IndexError(f"example {index} out of range [0, {len(self)})")
    return self._examples.rows(index)


def examples_train_iterator(
  examples: Examples,
  batch_size: int,
  seed: int,
  process_index: int = 0,
  process_count: int = 1,
  *,
  augment: Augment | None = None,
) -> grain.DatasetIterator:
  """`train_iterator` over examples in memory: a fresh global order each epoch from `seed`,
  `augment` (if any) drawn from `seed` too."""
  epoch = grain.MapDataset.source(RowSource(examples)).seed(seed).shuffle()
  return train_iterator(
    epoch, batch_size, process_index, process_count, augment=augment, augment_seed=seed
  )


def eval_batches(examples: Examples, batch_size: int) -> list[dict[str, np.ndarray]]:
  """Every example exactly once, in order, in batches of `batch_size` rows (global batches).

  The last batch is filled with copies of example 0 weighted 0 (real inputs rather than empty
  rows, whose fully masked attention could give NaN), so a weighted mean counts each example
  once.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size} must be positive")
  if len(examples) == 0:
    raise ValueError("no examples to evaluate")
  batches = []
  for start in range(0, len(examples), batch_size):
    index = np.arange(start, start + batch_size)
    real = index < len(examples)
    batch = examples.rows(np.where(real, index, 0))
    batch["weights"] = real.astype(np.float32)
    batches.append(batch)
  return batches


def first_batches(
  ds: grain.MapDataset, batch_size: int, max_batches: int
) -> list[dict[str, np.ndarray]]:
  """The first `max_batches` full batches of `ds`, in order (fewer if it is short; none if it
  holds less than one): the same examples on every evaluation."""
  batched = ds.batch(batch_size, drop_remainder=True)
  return [batched[i] for i in range(min(len(batched), max_batches))]
