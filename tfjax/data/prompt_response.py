"""Prompt -> response inputs for fine-tuning a GPT: `prompt <sep> response <eos>`.

Each (prompt, response) text pair is encoded with the run's tokenizer and becomes one sequence
`prompt <sep> response <eos>`. The separator (`data.separator`, "<summarize>" for summaries) is
a token appended after the pre-trained vocabulary, as GPT-1's added tokens are
(`tfjax.data.gpt_inputs`, `tfjax.models.gpt.add_tokens`); EOS is the tokenizer's own where it
has one (ours, GPT-2's), else a second added token.

A sequence of L tokens gives the model L - 1 inputs (it without EOS) and L - 1 targets (it
shifted by one): EOS is only ever a target, so an example takes L - 1 slots of a row of
`data.max_seq_len`. Only the response is learned: the target after <sep> (the first response
token, predicted from <sep>) through EOS weigh 1; the prompt's own next tokens weigh 0.

Rows hold several examples end to end (`packing=True`: in order, a new row when the next one
does not fit, as `tfjax.data.seq2seq.pack_pairs` packs translation pairs), each with its segment
id (1, 2, ...; 0 = padding) and positions restarting at 0, so `GPT(..., segment_ids=...)` keeps
attention inside each example; or one example per row, then padding (`packing=False`, the
lecture's `Article tokens <summarize> Article summary padding`). Both give the same loss.

Too long: a prompt that does not fit beside <sep> and its response is cut from its start (its
end, next to the separator, is kept; `cut_from="end"` keeps its beginning instead, an article's
first sentences) and counted; a response that does not fit even after an empty prompt is dropped
and counted. With `truncate=False` either is an error.
"""

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from tfjax.data import pipeline
from tfjax.data.text_pairs import SplitPairs, TextPairs, read_pairs
from tfjax.data.tokenizers.base import Tokenizer

Ids = Sequence[int]
FEATURES = ("inputs", "targets", "weights", "segment_ids", "positions")  # of a row
EOS_NAME = "<eos>"  # the added EOS of a tokenizer that has none (GPT-1's)
MIN_SEQ_LEN = 2  # <sep> and one response token as inputs (EOS is only a target)
CUT_FROM = ("start", "end")  # where a too long prompt loses its tokens


@dataclasses.dataclass(frozen=True)
class PromptTokens:
  """The separator and EOS ids; `added` names the tokens appended after the vocabulary, in id
  order (the separator first, then EOS where the tokenizer has none)."""

  separator: int
  eos: int
  added: tuple[str, ...]

  @property
  def num_added(self) -> int:
    return len(self.added)


def prompt_tokens(tokenizer: Tokenizer, vocab_size: int, separator: str) -> PromptTokens:
  """The separator `separator` as id `vocab_size` (the model's pre-trained vocabulary size),
  and EOS: the tokenizer's, or the next id. A separator the vocabulary already holds as one
  piece is refused: the added token would not be the only one to read that way."""
  if not separator:
    raise ValueError("data.separator is empty; name the separator token, e.g. '<summarize>'")
  ids = tokenizer.encode(separator)
  if len(ids) == 1 and tokenizer.decode(ids).strip() == separator.strip():
    raise ValueError(
      f"data.separator={separator!r} is already a piece of the tokenizer's vocabulary (id "
      f"{ids[0]}); name a token it lacks, e.g. '<summarize>'"
    )
  if tokenizer.eos_id is not None:
    return PromptTokens(vocab_size, tokenizer.eos_id, (separator,))
  if separator == EOS_NAME:
    raise ValueError(
      f"data.separator={separator!r} is the name of the EOS token added for a tokenizer "
      "without one; choose another, e.g. '<summarize>'"
    )
  return PromptTokens(vocab_size, vocab_size + 1, (separator, EOS_NAME))


def check_data_config(data_config: Any, *, fields: bool = True) -> None:
  """The fields are named and differ, the separator is named, rows hold <sep> and a token.
  `fields=False` for an instruction mixture, whose fields are its table's
  (`tfjax.data.instructions`)."""
  for key in ("prompt_field", "response_field") if fields else ():
    if not data_config[key]:
      raise ValueError(f"data.{key} is empty; set it to a text feature of data.name")
  if fields and data_config.prompt_field == data_config.response_field:
    raise ValueError(
      f"data.prompt_field and data.response_field are both {data_config.prompt_field!r}; "
      "name two features"
    )
  if not data_config.separator:
    raise ValueError("data.separator is empty; name the separator token, e.g. '<summarize>'")
  if data_config.cut_from not in CUT_FROM:
    raise ValueError(
      f"data.cut_from={data_config.cut_from!r}: use 'start' (drop a too long prompt's first "
      "tokens) or 'end' (its last)"
    )
  if data_config.max_seq_len < MIN_SEQ_LEN:
    raise ValueError(
      f"data.max_seq_len={data_config.max_seq_len} leaves no room for the separator and one "
      f"response token (a row holds the inputs; EOS is only a target); raise it to at least "
      f"{MIN_SEQ_LEN}"
    )


# ------------------------------------------------------------------------------ one example


def cut_prompt(
  prompt: Ids, response_len: int, max_seq_len: int, cut_from: str = "start"
) -> list[int] | None:
  """What of `prompt` fits a row of `max_seq_len` inputs beside <sep> and a response of
  `response_len` tokens (EOS is only a target): its end (cut from its start) or, with
  `cut_from="end"`, its beginning; None when the response does not fit even alone."""
  room = max_seq_len - 1 - response_len
  if room < 0:
    return None
  return keep_prompt(prompt, room, cut_from)


def keep_prompt(prompt: Ids, room: int, cut_from: str = "start") -> list[int]:
  """`prompt` cut to at most `room` tokens: its last ones (`cut_from="start"`) or first."""
  prompt = list(prompt)
  if len(prompt) <= room:
    return prompt
  return prompt[len(prompt) - room :] if cut_from == "start" else prompt[:room]


def example_sequence(prompt: Ids, response: Ids, tokens: PromptTokens) -> list[int]:
  """`prompt <sep> response <eos>`."""
  return [*prompt, tokens.separator, *response, tokens.eos]


@dataclasses.dataclass(frozen=True)
class EncodedPairs:
  """Sequences `prompt <sep> response <eos>` of one split, and what fitting them cost."""

  sequences: list[np.ndarray]  # int32 [L_i]
  separators: list[int]  # where each sequence's <sep> is (the length of its kept prompt)
  num_cut: int  # prompts cut from their start
  num_dropped: int  # pairs whose response does not fit even after an empty prompt

  def __len__(self) -> int:
    return len(self.sequences)


def encode_pairs(
  tokenizer: Tokenizer,
  tokens: PromptTokens,
  prompts: Sequence[str],
  responses: Sequence[str],
  *,
  max_seq_len: int,
  truncate: bool = True,
  cut_from: str = "start",
  name: str = "the pairs",
) -> EncodedPairs:
  """Encodes text pairs into sequences that fit rows of `max_seq_len` inputs, cutting prompts
  and dropping responses that do not fit (both counted and logged), or, with `truncate=False`,
  refusing them. `name` says in errors and logs which pairs these are."""
  if len(prompts) != len(responses):
    raise ValueError(f"{name}: {len(prompts)} prompts but {len(responses)} responses")
  prompt_ids = pipeline.encode_in_chunks(tokenizer.encode_batch, prompts)
  response_ids = pipeline.encode_in_chunks(tokenizer.encode_batch, responses)
  sequences, separators, num_cut, num_dropped = [], [], 0, 0
  for i, (prompt, response) in enumerate(zip(prompt_ids, response_ids, strict=True)):
    if not response:
      raise ValueError(
        f"pair {i} of {name} has a response that encodes to no tokens; fill or remove it"
      )
    kept = cut_prompt(prompt, len(response), max_seq_len, cut_from)
    if (kept is None or len(kept) < len(prompt)) and not truncate:
      raise ValueError(
        f"pair {i} of {name} needs {len(prompt) + 1 + len(response)} inputs (prompt, separator, "
        f"response), more than data.max_seq_len={max_seq_len}; raise data.max_seq_len, or set "
        "data.truncate=True to cut prompts from their start (and drop responses too long alone)"
      )
    if kept is None:
      num_dropped += 1
      continue
    num_cut += len(kept) < len(prompt)
    sequences.append(np.asarray(example_sequence(kept, response, tokens), np.int32))
    separators.append(len(kept))
  if num_cut:
    logging.warning(
      "Cut the prompts of %d of %d pairs of %s from their %s to fit data.max_seq_len=%d "
      "(separator and response kept)",
      num_cut,
      len(prompts),
      name,
      cut_from,
      max_seq_len,
    )
  if num_dropped:
    logging.warning(
      "Dropped %d of %d pairs of %s whose response does not fit data.max_seq_len=%d even "
      "without a prompt",
      num_dropped,
      len(prompts),
      name,
      max_seq_len,
    )
  return EncodedPairs(sequences, separators, num_cut, num_dropped)


# ------------------------------------------------------------------------------ rows


def pack(
  encoded: EncodedPairs, max_seq_len: int, pad_id: int = 0, *, packing: bool = True
) -> dict[str, np.ndarray]:
  """Rows of `max_seq_len` slots, FEATURES each [num_rows, max_seq_len]: "inputs" and
  "targets" (int32, a sequence without its last / first token), "weights" (float32, 1 on the
  response targets and EOS), "segment_ids" (1, 2, ... per example, 0 = padding) and "positions"
  (0, 1, ... inside each example). `packing`: examples in order, end to end, a new row when the
  next does not fit; False: one example per row."""
  rows: list[list[int]] = []
  used = max_seq_len + 1  # forces a first row
  for k, sequence in enumerate(encoded.sequences):
    slots = len(sequence) - 1
    if slots > max_seq_len:
      raise ValueError(f"sequence {k} takes {slots} inputs; rows hold {max_seq_len}")
    if not packing or used + slots > max_seq_len:
      rows.append([])
      used = 0
    rows[-1].append(k)
    used += slots

  packed = {name: np.zeros((len(rows), max_seq_len), np.int32) for name in FEATURES}
  packed["inputs"][:] = pad_id
  packed["weights"] = np.zeros((len(rows), max_seq_len), np.float32)
  for r, row in enumerate(rows):
    start = 0
    for segment, k in enumerate(row, start=1):
      sequence, n = encoded.sequences[k], len(encoded.sequences[k]) - 1
      where = slice(start, start + n)
      packed["inputs"][r, where] = sequence[:-1]
      packed["targets"][r, where] = sequence[1:]
      # Input j predicts token j + 1: from <sep> (j = separator) on, a response token or EOS.
      packed["weights"][r, where] = np.arange(n) >= encoded.separators[k]
      packed["segment_ids"][r, where] = segment
      packed["positions"][r, where] = np.arange(n)
      start += n
  return packed


def shuffled(encoded: EncodedPairs, seed: int) -> EncodedPairs:
  """The examples in a fixed random order (packed rows then mix short and long ones)."""
  order = np.random.default_rng(seed).permutation(len(encoded))
  return dataclasses.replace(
    encoded,
    sequences=[encoded.sequences[i] for i in order],
    separators=[encoded.separators[i] for i in order],
  )


@dataclasses.dataclass(frozen=True)
class PromptResponseData:
  """Rows of the train and eval splits, and the test split's texts (decoded at the end)."""

  train: dict[str, np.ndarray]
  eval: dict[str, np.ndarray]
  test: TextPairs | None


def read_splits(data_config: Any) -> SplitPairs:
  """The text pairs of `data_config.name` (a TFDS dataset): train_split, eval_split and
  test_split ("" for none), read by `read_pairs` from prompt_field and response_field."""
  fields = {key: data_config[key] for key in ("prompt_field", "response_field")}
  dataset = pipeline.prepare_dataset(data_config, fields)
  read = lambda split: read_pairs(
    dataset, split, *fields.values(), skip_empty=data_config.skip_empty
  )
  return SplitPairs(
    train=read(data_config.train_split),
    eval=read(data_config.eval_split),
    test=read(data_config.test_split) if data_config.test_split else None,
  )


def encode_splits(
  data_config: Any, pairs: SplitPairs, tokenizer: Tokenizer, tokens: PromptTokens, seed: int
) -> PromptResponseData:
  """Encodes the train and eval pairs into rows (train pairs shuffled with `seed` before
  packing), as `data_config` says: max_seq_len, packing, truncate, cut_from (see the module
  docstring); the test pairs stay texts."""
  pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0

  def rows(pairs: TextPairs, shuffle: bool) -> dict[str, np.ndarray]:
    encoded = encode_pairs(
      tokenizer,
      tokens,
      pairs.prompts,
      pairs.responses,
      max_seq_len=data_config.max_seq_len,
      truncate=data_config.truncate,
      cut_from=data_config.cut_from,
      name=pairs.name,
    )
    if not len(encoded):
      raise ValueError(f"no pair of {pairs.name} fits data.max_seq_len={data_config.max_seq_len}")
    packed = pack(
      shuffled(encoded, seed) if shuffle else encoded,
      data_config.max_seq_len,
      pad_id,
      packing=data_config.packing,
    )
    logging.info(
      "Encoded %s: %d pairs in %d rows of %d (%s), %d response tokens",
      pairs.name,
      len(encoded),
      len(packed["inputs"]),
      data_config.max_seq_len,
      "packed" if data_config.packing else "one per row",
      int(packed["weights"].sum()),
    )
    return packed

  return PromptResponseData(
    train=rows(pairs.train, shuffle=True), eval=rows(pairs.eval, shuffle=False), test=pairs.test
  )


def prepare_data(
  data_config: Any, tokenizer: Tokenizer, tokens: PromptTokens, seed: int
) -> PromptResponseData:
  """Reads `data_config.name` (a TFDS dataset, `read_splits`) and encodes its train and eval
  splits into rows (`encode_splits`).

  `data_config` is `config.data`: name, tfds_data_dir, prompt_field, response_field,
  train_split, eval_split, test_split ("" for none), max_seq_len, separator, packing, truncate,
  cut_from, skip_empty (see the module docstring).
  """
  check_data_config(data_config)
  return encode_splits(data_config, read_splits(data_config), tokenizer, tokens, seed)
