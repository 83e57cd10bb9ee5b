"""GPT fine-tuning inputs: a TFDS dataset -> GPT-1's transformed sequences -> fixed-length rows.

`config.data.transformation` names the transformation of Radford et al. 2018, §3.3
(`tfjax.data.gpt_inputs`) and the features it reads:

  classification   text_field                      [start] text [extract]
  entailment       text_field, text_pair_field     [start] premise [delim] hypothesis [extract]
  similarity       text_field, text_pair_field     both orders, their states added
  multiple_choice  text_field, choices_field       [start] context [delim] answer_k [extract]

Every example becomes `c` sequences (1; 2 for similarity; data.num_choices for multiple choice),
so rows are [n, c, max_seq_len]. The label is a ClassLabel (classes), the index of the right
answer (multiple choice), or a float (similarity as regression). Splits are small: encoded in
memory on every run, like BERT's (`tfjax.data.classification`), whose readers this shares.
"""

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from tfjax.data import gpt_inputs, pipeline
from tfjax.data.classification import (
  check_num_choices,
  class_label_names,
  label_ids,
  read_columns,
)
from tfjax.data.gpt_inputs import SpecialTokens
from tfjax.data.tokenizers.base import Tokenizer

# The features each transformation reads, by their config keys; others must be left empty.
TRANSFORMATIONS = {
  "classification": ("text_field",),
  "entailment": ("text_field", "text_pair_field"),
  "similarity": ("text_field", "text_pair_field"),
  "multiple_choice": ("text_field", "choices_field"),
}
FIELD_KEYS = ("text_field", "text_pair_field", "choices_field")
# Feature names of a batch; the model's inputs are the first two.
FEATURES = ("tokens", "extract_positions", "lm_weights", "label", "weights")


def sequences_per_example(data_config: Any) -> int:
  """c: the sequences one example becomes."""
  return {"similarity": 2, "multiple_choice": data_config.num_choices}.get(
    data_config.transformation, 1
  )


def check_data_config(data_config: Any) -> None:
  """The transformation is known and its fields are set, and only its fields (a text pair
  given where one text is wanted is an error, not silently dropped)."""
  name = data_config.transformation
  if name not in TRANSFORMATIONS:
    raise ValueError(
      f"data.transformation={name!r} is unknown; choose one of {sorted(TRANSFORMATIONS)}"
    )
  wanted = TRANSFORMATIONS[name]
  for key in FIELD_KEYS:
    if key in wanted and not data_config[key]:
      raise ValueError(f"data.transformation={name!r} reads data.{key}; set it to a feature name")
    if key not in wanted and data_config[key]:
      takes = [t for t, keys in TRANSFORMATIONS.items() if key in keys]
      raise ValueError(
        f"data.{key}={data_config[key]!r} is set, but data.transformation={name!r} reads only "
        f"{', '.join(f'data.{k}' for k in wanted)}; clear data.{key} or use a transformation "
        f"that reads it ({', '.join(takes)})"
      )
  shortest = 3 if name == "classification" else 5  # the added tokens and a token per side
  if data_config.max_seq_len < shortest:
    raise ValueError(
      f"data.max_seq_len={data_config.max_seq_len} leaves no room for text beside the added "
      f"tokens of {name!r}; raise data.max_seq_len to at least {shortest}"
    )
  if name == "multiple_choice" and data_config.num_choices < 2:
    raise ValueError(
      f"data.num_choices={data_config.num_choices}: a multiple-choice question needs >= 2 "
      "answers; set it to the answers per question (social_iqa: 3, wiki_next_sentence: 4)"
    )


@dataclasses.dataclass(frozen=True)
class GPTExamples(pipeline.ArrayExamples):
  """Encoded examples of one split; row i is example i, as `c` packed sequences."""

  tokens: np.ndarray  # [n, c, max_seq_len] int32, padded after the extract token
  extract_positions: np.ndarray  # [n, c] int32: where each sequence's extract token is
  lm_weights: np.ndarray  # [n, c, max_seq_len] float32: 1 where the next token is real
  label: np.ndarray  # [n] int32 (a class, an answer's index) or float32 (a regression target)
  num_truncated: int  # examples shortened to fit max_seq_len


@dataclasses.dataclass(frozen=True)
class GPTFineTuningData:
  """The labels and the encoded train, eval and (optional) test splits of one dataset."""

  label_names: tuple[str, ...] | None  # the classes; None for answers and regression targets
  regression: bool  # a float target (similarity ratings) rather than a class
  train: GPTExamples
  eval: GPTExamples
  test: GPTExamples | None


def encode_examples(
  tokenizer: Tokenizer,
  special: SpecialTokens,
  transformation: str,
  texts: Sequence[str],
  labels: np.ndarray,
  *,
  max_seq_len: int,
  second: Sequence[str] | Sequence[Sequence[str]] | None = None,
  num_choices: int = 0,
  truncate: bool = True,
  name: str = "the examples",
) -> GPTExamples:
  """Encodes examples with GPT-1's `transformation`: `texts` (the text, premise, first text or
  context) and `second` (the hypothesis or second text; for multiple choice each example's
  answers, exactly `num_choices`). Too long sequences are cut at the end (pairs longest first)
  and counted, or rejected when `truncate` is False. `name` says in errors which examples these
  are ("split 'train' of dataset 'x'")."""
  n = len(texts)
  if len(labels) != n or (second is not None and len(second) != n):
    raise ValueError(
      f"{name}: {n} texts, {len(labels)} labels and {len(second or [])} second sides"
    )
  first = pipeline.encode_in_chunks(tokenizer.encode_batch, texts)
  if transformation == "multiple_choice":
    check_num_choices(second, num_choices, name)
    flat = pipeline.encode_in_chunks(tokenizer.encode_batch, [a for ans in second for a in ans])
    others = [flat[i * num_choices : (i + 1) * num_choices] for i in range(n)]
  elif second is not None:
    others = [[ids] for ids in pipeline.encode_in_chunks(tokenizer.encode_batch, second)]
  else:
    others = [[] for _ in range(n)]

  num_special = 2 if transformation == "classification" else 3
  pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
  rows, num_truncated = [], 0
  for i in range(n):
    try:
      sequences = _transform(transformation, first[i], others[i], special, max_seq_len)
    except ValueError as e:  # an empty side
      raise ValueError(f"example {i} of {name}: {e}") from None
    full = max([len(first[i]) + len(o) for o in others[i]] or [len(first[i])]) + num_special
    if full > max_seq_len:
      if not truncate:
        raise ValueError(
          f"example {i} of {name} has {full} tokens with the added ones, more than "
          f"max_seq_len={max_seq_len}; raise data.max_seq_len or set data.truncate=True"
        )
      num_truncated += 1
    rows.append(gpt_inputs.pack(sequences, max_seq_len, pad_id))
  stack = lambda key: np.stack([row[key] for row in rows]) if rows else None
  return GPTExamples(
    stack("tokens"), stack("extract_positions"), stack("lm_weights"), labels, num_truncated
  )


def _transform(
  transformation: str, first: list[int], others: list[list[int]], special: SpecialTokens, t: int
) -> list[list[int]]:
  if transformation == "classification":
    return [gpt_inputs.classification_sequence(first, special, t)]
  if transformation == "entailment":
    return [gpt_inputs.pair_sequence(first, others[0], special, t)]
  if transformation == "similarity":
    return list(gpt_inputs.similarity_sequences(first, others[0], special, t))
  return gpt_inputs.multiple_choice_sequences(first, others, special, t)


def prepare_gpt_data(
  data_config: Any, tokenizer: Tokenizer, special: SpecialTokens
) -> GPTFineTuningData:
  """Reads a TFDS dataset by name and encodes its splits with `data_config.transformation`.

  `data_config` is `config.data`: name, tfds_data_dir, transformation, text_field,
  text_pair_field, choices_field, label_field, num_choices, train_split, eval_split, test_split
  ("" for none), max_seq_len, truncate (see `check_data_config`).
  """
  check_data_config(data_config)
  keys = (*TRANSFORMATIONS[data_config.transformation], "label_field")
  fields = {key: data_config[key] for key in keys}
  dataset = pipeline.prepare_dataset(data_config, fields)
  label_names, regression = _label_kind(dataset, data_config)

  def encode_split(split: str) -> GPTExamples:
    what = f"split '{split}' of dataset '{dataset.name}'"
    columns = read_columns(dataset.examples(split), list(fields.values()))
    texts = columns[data_config.text_field]
    if not texts:
      raise ValueError(f"{what} has no examples")
    second_key = next((k for k in ("text_pair_field", "choices_field") if k in fields), None)
    second = columns[fields[second_key]] if second_key else None
    if data_config.transformation == "multiple_choice":
      second = [[pipeline.as_text(a) for a in answers] for answers in second]
      check_num_choices(second, data_config.num_choices, what)
    raw_labels = columns[data_config.label_field]
    if regression:
      labels = np.asarray(raw_labels, np.float32)
    elif label_names is not None:
      labels = label_ids(raw_labels, label_names)
    else:
      labels = _answer_indices(raw_labels, data_config.num_choices, what)
    examples = encode_examples(
      tokenizer,
      special,
      data_config.transformation,
      texts,
      labels,
      max_seq_len=data_config.max_seq_len,
      second=second,
      num_choices=data_config.num_choices,
      truncate=data_config.truncate,
      name=what,
    )
    logging.info(
      "Encoded %s (%s): %d examples, %d truncated to max_seq_len=%d",
      what,
      data_config.transformation,
      len(examples),
      examples.num_truncated,
      data_config.max_seq_len,
    )
    return examples

  return GPTFineTuningData(
    label_names=label_names,
    regression=regression,
    train=encode_split(data_config.train_split),
    eval=encode_split(data_config.eval_split),
    test=encode_split(data_config.test_split) if data_config.test_split else None,
  )


def _label_kind(
  dataset: pipeline.PreparedDataset, data_config: Any
) -> tuple[tuple[str, ...] | None, bool]:
  """(class names or None, regression?) of the label feature, checked against the
  transformation: multiple choice wants an answer index, the others a class or a float."""
  feature = dataset.builder.info.features[data_config.label_field]
  is_class = isinstance(feature, tfds.features.ClassLabel)
  dtype = np.dtype(feature.np_dtype)
  if data_config.transformation == "multiple_choice":
    if is_class or not np.issubdtype(dtype, np.integer):
      raise ValueError(
        f"feature '{data_config.label_field}' of dataset '{dataset.name}' should be the index "
        f"of the right answer (an integer) for multiple choice; it is a {type(feature).__name__}"
      )
    return None, False
  if is_class:
    return class_label_names(dataset, data_config.label_field), False
  if np.issubdtype(dtype, np.floating):
    return None, True
  raise ValueError(
    f"feature '{data_config.label_field}' of dataset '{dataset.name}' is a "
    f"{type(feature).__name__} of {dtype}, neither a ClassLabel nor a float target; set "
    "data.label_field to one"
  )


def _answer_indices(labels: Sequence[Any], num_choices: int, name: str) -> np.ndarray:
  ids = np.asarray(labels, np.int64)
  bad = np.flatnonzero((ids < 0) | (ids >= num_choices))
  if bad.size:
    raise ValueError(
      f"example {bad[0]} of {name} names answer {ids[bad[0]]}, outside [0, data.num_choices="
      f"{num_choices}); fix the label or data.num_choices"
    )
  return ids.astype(np.int32)
