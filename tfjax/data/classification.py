"""Sequence-classification inputs for BERT: TFDS examples -> fixed-length token rows -> batches.

One example becomes `[CLS] a [SEP]`, or `[CLS] a [SEP] b [SEP]` for a pair, padded to
`max_seq_len`, with segment ids 0 for `[CLS] a [SEP]` and 1 for `b [SEP]` (Devlin et al. 2018,
§3, Fig. 2). Any tokenizer with [CLS], [SEP] and [PAD] ids works (WordPiece for imported
checkpoints, sentencepiece for our own). Splits are small (thousands of short texts
encode in about a second), so they are encoded in memory on every run, with no cache.
"""

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import grain
import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from tfjax.data import pipeline
from tfjax.data.tokenizers.base import Tokenizer

# Feature names of a batch; the model's inputs are the first three.
FEATURES = ("tokens", "segment_ids", "attention_mask", "label", "weights")


@dataclasses.dataclass(frozen=True)
class ClassificationExamples(pipeline.ArrayExamples):
  """Encoded examples of one split; row i is example i, in the order given."""

  tokens: np.ndarray  # [n, max_seq_len] int32: [CLS] a [SEP] (b [SEP]), then pad_id
  segment_ids: np.ndarray  # [n, max_seq_len] int32: 1 on b [SEP], else 0
  attention_mask: np.ndarray  # [n, max_seq_len] int32: 1 on real tokens, 0 on padding
  label: np.ndarray  # [n] int32
  num_truncated: int  # examples shortened to fit max_seq_len


@dataclasses.dataclass(frozen=True)
class ClassificationData:
  """The label names and the encoded train, eval and (optional) test splits of one dataset."""

  label_names: tuple[str, ...]
  train: ClassificationExamples
  eval: ClassificationExamples
  test: ClassificationExamples | None

  @property
  def num_labels(self) -> int:
    return len(self.label_names)


def truncate_pair_lengths(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
  """Lengths of a pair cut "longest first" to at most `budget` tokens together.

  The closed form of Google BERT's `_truncate_seq_pair` (run_classifier.py), which drops the
  last token of the longer side (of `b` on a tie) until the pair fits.
  """
  if len_a + len_b <= budget:
    return len_a, len_b
  half_b = budget // 2
  half_a = budget - half_b
  if len_a <= half_a:
    return len_a, budget - len_a
  if len_b <= half_b:
    return budget - len_b, len_b
  return half_a, half_b


def label_ids(labels: Sequence[Any], label_names: Sequence[str]) -> np.ndarray:
  """Labels given as names (str or bytes) or as ids -> int32 ids in [0, len(label_names))."""
  index = {name: i for i, name in enumerate(label_names)}
  ids = np.zeros((len(labels),), np.int32)
  for i, label in enumerate(labels):
    if isinstance(label, bytes):
      label = label.decode("utf-8")
    if isinstance(label, str):
      if label not in index:
        raise ValueError(
          f"example {i} has the unknown label {label!r}; the known labels are {list(label_names)}"
        )
      ids[i] = index[label]
    else:
      if not 0 <= int(label) < len(label_names):
        raise ValueError(
          f"example {i} has label id {int(label)}, outside [0, {len(label_names)}) of the labels "
          f"{list(label_names)}; an unlabelled split (GLUE test splits use -1) cannot be scored: "
          "use a labelled split"
        )
      ids[i] = int(label)
  return ids


def class_label_names(dataset: pipeline.PreparedDataset, label_field: str) -> tuple[str, ...]:
  """The class names of the ClassLabel feature `label_field`; another feature is an error."""
  label_feature = dataset.builder.info.features[label_field]
  if not isinstance(label_feature, tfds.features.ClassLabel):
    raise ValueError(
      f"feature '{label_field}' of dataset '{dataset.name}' is a "
      f"{type(label_feature).__name__}, not a ClassLabel; set config.data.label_field to the "
      "class label"
    )
  return tuple(label_feature.names)


def encode_examples(
  tokenizer: Tokenizer,
  texts: Sequence[str],
  labels: Sequence[Any],
  label_names: Sequence[str],
  *,
  max_seq_len: int,
  text_pairs: Sequence[str] | None = None,
  truncate: bool = True,
  name: str = "the examples",
) -> ClassificationExamples:
  """Encodes single texts or (text, text_pair) pairs with their labels into fixed-length rows.

  Too long examples are cut at the end (pairs longest-first, see `truncate_pair_lengths`) and
  counted in `num_truncated`, or rejected when `truncate` is False. `name` says in errors which
  examples these are ("split 'train' of dataset 'x'").
  """
  is_pair = text_pairs is not None
  n = len(texts)
  if len(labels) != n or (is_pair and len(text_pairs) != n):
    pair_count = f", {len(text_pairs)} text pairs" if is_pair else ""
    raise ValueError(
      f"{name}: {n} texts{pair_count} and {len(labels)} labels; give one of each per example"
    )
  num_special = 3 if is_pair else 2
  min_len = num_special + (2 if is_pair else 1)
  if max_seq_len < min_len:
    raise ValueError(
      f"max_seq_len={max_seq_len} leaves no room for text next to the {num_special} special "
      f"tokens; use max_seq_len >= {min_len}"
    )
  ids = label_ids(labels, label_names)
  sides = [_encode_side(tokenizer, texts, "text", name)]
  if is_pair:
    sides.append(_encode_side(tokenizer, text_pairs, "text_pair", name))

  lengths = np.array([[len(ids_) for ids_ in side] for side in sides]).T  # [n, sides]
  full = lengths.sum(axis=1) + num_special
  too_long = full > max_seq_len
  if too_long.any() and not truncate:
    longest = int(np.argmax(full))
    raise ValueError(
      f"example {longest} of {name} has {int(full[longest])} tokens with [CLS]/[SEP], more than "
      f"max_seq_len={max_seq_len} ({int(too_long.sum())} examples are too long); raise "
      "max_seq_len or set truncate=True"
    )

  tokens = np.full((n, max_seq_len), tokenizer.pad_id, np.int32)
  segment_ids = np.zeros((n, max_seq_len), np.int32)
  attention_mask = np.zeros((n, max_seq_len), np.int32)
  budget = max_seq_len - num_special
  for i in range(n):
    if is_pair:
      len_a, len_b = truncate_pair_lengths(*lengths[i], budget)
      b = [*sides[1][i][:len_b], tokenizer.sep_id]
    else:
      len_a, b = min(lengths[i, 0], budget), []
    a = [tokenizer.cls_id, *sides[0][i][:len_a], tokenizer.sep_id]
    tokens[i, : len(a) + len(b)] = a + b
    segment_ids[i, len(a) : len(a) + len(b)] = 1
    attention_mask[i, : len(a) + len(b)] = 1
  return ClassificationExamples(tokens, segment_ids, attention_mask, ids, int(too_long.sum()))


def encode_choices(
  encode: Any,
  contexts: Sequence[str],
  choices: Sequence[Sequence[Any]],
  labels: Sequence[Any],
  num_choices: int,
  name: str,
) -> ClassificationExamples:
  """Multiple choice as BERT does it (§4.4, SWAG): each (context, answer) pair encoded alone,
  rows [n, num_choices, max_seq_len]; `encode(texts, labels, pairs)` encodes pairs, `labels`
  are the right answers' indices. num_truncated counts the pairs cut."""
  names = tuple(str(i) for i in range(num_choices))
  answers = [[pipeline.as_text(a) for a in example] for example in choices]
  check_num_choices(answers, num_choices, name)
  flat = encode(
    [c for c in contexts for _ in range(num_choices)],
    [0] * (len(contexts) * num_choices),
    [a for example in answers for a in example],
  )
  rows = lambda x: x.reshape(len(contexts), num_choices, -1)
  return ClassificationExamples(
    rows(flat.tokens),
    rows(flat.segment_ids),
    rows(flat.attention_mask),
    label_ids(labels, names),
    flat.num_truncated,
  )


def check_num_choices(answers: Sequence[Sequence[str]], num_choices: int, name: str) -> None:
  """Every question has exactly `num_choices` answers (the rows are [n, num_choices, t])."""
  for i, example in enumerate(answers):
    if len(example) != num_choices:
      more = "more" if len(example) > num_choices else "fewer"
      raise ValueError(
        f"example {i} of {name} has {len(example)} answers, {more} than data.num_choices="
        f"{num_choices}; set data.num_choices to the answers every question has"
      )


def prepare_classification_data(data_config: Any, tokenizer: Tokenizer) -> ClassificationData:
  """Reads a TFDS text-classification dataset by name and encodes its splits.

  `data_config` is `config.data`: name (e.g. "rotten_tomatoes", "wiki_topics", "glue/sst2",
  "glue/mrpc", "imdb_reviews"), tfds_data_dir ("" for the TFDS default), text_field,
  text_pair_field ("" for single texts), label_field (a ClassLabel feature), train_split,
  eval_split, test_split ("" for none), max_seq_len, truncate. The dataset is prepared once as
  array_record and read with `tfds.data_source` (no TensorFlow).
  """
  choices_field, num_choices = data_config.get("choices_field", ""), data_config.get("num_choices")
  if choices_field and data_config.text_pair_field:
    raise ValueError(
      f"data.text_pair_field={data_config.text_pair_field!r} and data.choices_field="
      f"{choices_field!r} are both set; a multiple-choice example pairs its text with each "
      "answer: clear data.text_pair_field"
    )
  keys = ("text_field", "text_pair_field", "label_field")
  fields = {key: data_config[key] for key in keys}
  if choices_field:
    fields["choices_field"] = choices_field
  dataset = pipeline.prepare_dataset(data_config, fields)
  name = dataset.name
  if choices_field:  # the label is the index of the right answer
    label_names = tuple(str(i) for i in range(num_choices))
  else:
    label_names = class_label_names(dataset, data_config.label_field)

  def encode_split(split: str) -> ClassificationExamples:
    what = f"split '{split}' of dataset '{name}'"
    columns = read_columns(dataset.examples(split), [f for f in fields.values() if f])
    if not columns[data_config.text_field]:
      raise ValueError(f"{what} has no examples")
    encode = lambda texts, labels, pairs: encode_examples(
      tokenizer,
      texts,
      labels,
      label_names,
      max_seq_len=data_config.max_seq_len,
      text_pairs=pairs,
      truncate=data_config.truncate,
      name=what,
    )
    texts, labels = columns[data_config.text_field], columns[data_config.label_field]
    if choices_field:
      examples = encode_choices(encode, texts, columns[choices_field], labels, num_choices, what)
    else:
      pairs = columns[data_config.text_pair_field] if data_config.text_pair_field else None
      examples = encode(texts, labels, pairs)
    logging.info(
      "Encoded %s: %d examples, %d truncated to max_seq_len=%d",
      what,
      len(examples),
      examples.num_truncated,
      data_config.max_seq_len,
    )
    return examples

  return ClassificationData(
    label_names=label_names,
    train=encode_split(data_config.train_split),
    eval=encode_split(data_config.eval_split),
    test=encode_split(data_config.test_split) if data_config.test_split else None,
  )


def train_iterator(
  examples: ClassificationExamples,
  batch_size: int,
  seed: int,
  process_index: int = 0,
  process_count: int = 1,
) -> grain.DatasetIterator:
  """Endless shuffled batches for this process; checkpointable (`get_state()`/`set_state()`).

  A fresh global order each epoch from `seed`, process `i` taking examples `i::process_count`
  of it; `batch_size` is per process; batches run across epochs.
  Batches hold FEATURES, with weights 1.
  """
  return pipeline.examples_train_iterator(examples, batch_size, seed, process_index, process_count)


# --- helpers -------------------------------------------------------------------------------


def _encode_side(
  tokenizer: Tokenizer, texts: Sequence[str], side: str, name: str
) -> list[list[int]]:
  """Token ids of each text (no specials); an empty text is an error naming its example."""
  ids = pipeline.encode_in_chunks(tokenizer.encode_batch, texts)
  for i, text_ids in enumerate(ids):
    if not text_ids:
      raise ValueError(
        f"example {i} of {name} has an empty {side} ({texts[i]!r} encodes to no tokens); "
        "remove it from the dataset or fill it in"
      )
  return ids


def read_columns(examples: Iterable[dict[str, Any]], fields: Sequence[str]) -> dict[str, list]:
  """The values of `fields` of every example, in order; text decoded."""
  columns: dict[str, list[Any]] = {field: [] for field in fields}
  for example in examples:
    for field in fields:
      value = example[field]
      columns[field].append(value.decode("utf-8") if isinstance(value, bytes) else value)
  return columns
