"""Extractive question answering inputs for BERT (SQuAD; Devlin et al. 2018, §4.2).

A question and its context paragraph become one or more fixed-length windows
`[CLS] question [SEP] context[a:b] [SEP]`, segment ids 0 then 1 from the context on. Contexts
longer than a window are covered by sliding windows whose starts are `doc_stride` tokens apart
(Google's run_squad.py: max_seq_len 384, doc_stride 128, max_query_length 64). A window's labels
are the token positions of the first gold answer's first and last tokens, or 0 ([CLS]) for both
when the answer is not wholly inside the window (or the question has none, SQuAD 2.0): Google
and HF label such windows so for SQuAD 1.1 training as well as 2.0, and so do we.

Token <-> text: every context token keeps its character span in the context (WordPiece offsets
from `tokenizers`, SentencePiece ones from its pieces), so a predicted token span maps back to
the exact context text, whatever the tokenizer's normalisation (lowercasing, accents).
"""

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from absl import logging

from tfjax.data import pipeline
from tfjax.data.tokenizers import bert as bert_tokenizer
from tfjax.data.tokenizers.base import Tokenizer

# Feature names of a batch; the model's inputs are the first three.
FEATURES = ("tokens", "segment_ids", "attention_mask", "start_position", "end_position", "weights")
# The config keys naming the TFDS features read (squad's: id, question, context, answers).
FIELD_KEYS = ("id_field", "question_field", "context_field", "answers_field")


@dataclasses.dataclass(frozen=True)
class SquadExample:
  """One question on one context, with every gold answer (SQuAD 2.0's unanswerable: none)."""

  id: str
  question: str
  context: str
  answers: tuple[str, ...]
  answer_starts: tuple[int, ...]  # character offsets of the answers in the context


@dataclasses.dataclass(frozen=True)
class SquadFeatures:
  """The windows of one split's examples; window i belongs to example `example_index[i]`.

  Row j of window i is a context token when `context_offset[i] <= j < context_offset[i] +
  context_length[i]`; it is token `doc_start[i] + j - context_offset[i]` of its context, whose
  character span is `char_spans(i)[j]`.
  """

  examples: tuple[SquadExample, ...]
  tokens: np.ndarray  # [n, max_seq_len] int32: [CLS] q [SEP] context window [SEP], then pad_id
  lengths: np.ndarray  # [n] int32: real tokens of each window
  context_offset: np.ndarray  # [n] int32: row position of the first context token
  context_length: np.ndarray  # [n] int32: context tokens in the window
  doc_start: np.ndarray  # [n] int32: index in the context's tokens of the first one
  start_position: np.ndarray  # [n] int32: row position of the answer's first token, or 0
  end_position: np.ndarray  # [n] int32: row position of the answer's last token, or 0
  example_index: np.ndarray  # [n] int32
  context_offsets: tuple[np.ndarray, ...]  # per example: [context tokens, 2] character spans
  num_answer_outside: int  # windows labelled [CLS]: no answer, or not wholly in the window

  def __len__(self) -> int:
    return len(self.tokens)

  def rows(self, indices: Any) -> dict[str, np.ndarray]:
    """The windows at `indices` (an int or an index array) as a batch of FEATURES, weights 1."""
    positions = np.arange(self.tokens.shape[1])
    lengths = self.lengths[indices][..., None]
    real = positions < lengths
    return {
      "tokens": self.tokens[indices],
      "segment_ids": (real & (positions >= self.context_offset[indices][..., None])).astype(
        np.int32
      ),
      "attention_mask": real.astype(np.int32),
      "start_position": self.start_position[indices],
      "end_position": self.end_position[indices],
      "weights": np.ones(np.shape(self.lengths[indices]), np.float32),
    }

  def char_spans(self, index: int) -> np.ndarray:
    """[max_seq_len, 2] int32: each row's character span in its context; -1 on other tokens."""
    spans = np.full((self.tokens.shape[1], 2), -1, np.int32)
    first, count = int(self.context_offset[index]), int(self.context_length[index])
    doc = self.context_offsets[self.example_index[index]]
    start = int(self.doc_start[index])
    spans[first : first + count] = doc[start : start + count]
    return spans

  def span_masks(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where an answer may start and end in the windows at `indices`, [len(indices), seq] bool.

    It may end at any context token; it may start only where the window gives that token its
    most context (Google's `_check_is_max_context`), so that a token seen by several windows is
    scored once, in the window where it has the most words on either side.
    """
    indices = np.asarray(indices)
    positions = np.arange(self.tokens.shape[1])
    first = self.context_offset[indices][:, None]
    in_context = (positions >= first) & (positions < first + self.context_length[indices][:, None])
    starts = in_context.copy()
    for row, i in enumerate(indices):
      starts[row] &= self._max_context(int(i))
    return starts, in_context

  def _max_context(self, index: int) -> np.ndarray:
    """[max_seq_len] bool: the context tokens of window `index` that have their most context in
    it among the windows of its example (score = min(left, right) + 0.01 * window length)."""
    example = self.example_index[index]
    same = np.flatnonzero(self.example_index == example)
    doc_len = len(self.context_offsets[example])
    best = np.full(doc_len, -np.inf)
    best_window = np.full(doc_len, -1)
    for w in same:  # in order: on a tie the earlier window wins, as in Google's loop
      start, length = int(self.doc_start[w]), int(self.context_length[w])
      pos = np.arange(start, start + length)
      score = np.minimum(pos - start, start + length - 1 - pos) + 0.01 * length
      better = score > best[pos]
      best[pos[better]] = score[better]
      best_window[pos[better]] = w
    mask = np.zeros(self.tokens.shape[1], bool)
    first, count = int(self.context_offset[index]), int(self.context_length[index])
    start = int(self.doc_start[index])
    mask[first : first + count] = best_window[start : start + count] == index
    return mask

  def answer_text(self, index: int, start: int, end: int) -> str:
    """The context text of rows `start..end` (inclusive) of window `index`."""
    spans = self.char_spans(index)
    if not 0 <= start <= end < len(spans) or spans[start, 0] < 0 or spans[end, 0] < 0:
      raise ValueError(
        f"rows {start}..{end} of window {index} are not a span of its context tokens"
      )
    context = self.examples[self.example_index[index]].context
    return context[spans[start, 0] : spans[end, 1]]


# ------------------------------------------------------------------------------- offsets


def encode_with_offsets(tokenizer: Any, texts: Sequence[str]) -> list[tuple[list[int], np.ndarray]]:
  """(ids, [len(ids), 2] character spans) of each text, no special tokens added.

  Spans are [start, end) into the original text, leading whitespace left out (SentencePiece's
  "▁the" covers "the"); a token covering no character (a byte-fallback piece before the last
  byte of its character, a lone "▁") gets an empty span. Works with `WordPieceTokenizer`,
  `SentencePieceBertTokenizer`, or any tokenizer with `encode_batch_with_offsets`.
  """
  texts = list(texts)
  if hasattr(tokenizer, "encode_batch_with_offsets"):
    encoded = tokenizer.encode_batch_with_offsets(texts)
  elif isinstance(tokenizer, bert_tokenizer.WordPieceTokenizer):
    encodings = tokenizer._tokenizer.encode_batch(texts, add_special_tokens=False)
    encoded = [(e.ids, e.offsets) for e in encodings]  # character offsets already
  elif isinstance(tokenizer, bert_tokenizer.SentencePieceBertTokenizer):
    protos = tokenizer._sp._processor.encode(texts, return_type="proto")
    encoded = []
    for text, proto in zip(texts, protos, strict=True):
      to_char = _byte_to_char(text)
      spans = [(to_char[p.begin], to_char[p.end]) for p in proto.pieces]
      encoded.append(([p.id for p in proto.pieces], spans))
  else:
    raise TypeError(
      f"{type(tokenizer).__name__} gives no character offsets; use a WordPieceTokenizer or "
      "SentencePieceBertTokenizer, or give it encode_batch_with_offsets(texts)"
    )
  result = []
  for text, (ids, spans) in zip(texts, encoded, strict=True):
    spans = np.array(spans, np.int32).reshape(-1, 2)
    for span in spans:  # leading whitespace out
      while span[0] < span[1] and text[span[0]].isspace():
        span[0] += 1
    result.append((list(ids), spans))
  return result


def _byte_to_char(text: str) -> np.ndarray:
  """[utf-8 length + 1]: the index of the character holding each byte (len(text) at the end)."""
  sizes = [len(c.encode("utf-8")) for c in text]
  return np.append(np.repeat(np.arange(len(text)), sizes), len(text)).astype(np.int32)


# ------------------------------------------------------------------------------ encoding


def window_starts(num_tokens: int, window: int, doc_stride: int) -> list[tuple[int, int]]:
  """(start, length) of the windows covering `num_tokens` context tokens (Google's loop): each
  starts `doc_stride` after the previous one (less when that one was shorter), until one ends
  at the last token. An empty context still gets one (empty) window."""
  spans, start = [], 0
  while True:
    length = min(num_tokens - start, window)
    spans.append((start, length))
    if start + length >= num_tokens:
      return spans
    start += min(length, doc_stride)


def encode_examples(
  tokenizer: Tokenizer,
  examples: Sequence[SquadExample],
  *,
  max_seq_len: int,
  doc_stride: int,
  max_query_length: int,
  name: str = "the examples",
) -> SquadFeatures:
  """Encodes questions and contexts into windows (see the module docstring).

  Questions are cut to `max_query_length` tokens; each context gets `window_starts` windows of
  `max_seq_len - question - 3` tokens. `tokenizer` needs character offsets
  (`encode_with_offsets`). `name` says in errors which examples these are.
  """
  if not examples:
    raise ValueError(f"{name} has no examples")
  if doc_stride < 1:
    raise ValueError(f"doc_stride={doc_stride} must be >= 1 (Google's run_squad.py uses 128)")
  if max_query_length < 1 or max_seq_len - max_query_length - 3 < 1:
    raise ValueError(
      f"max_seq_len={max_seq_len} leaves no context token beside a question of up to "
      f"max_query_length={max_query_length} tokens and 3 special tokens; use max_query_length "
      f"<= {max_seq_len - 4} (Google's run_squad.py: 384 and 64)"
    )
  questions = pipeline.encode_in_chunks(tokenizer.encode_batch, [e.question for e in examples])
  unique_contexts = list(dict.fromkeys(e.context for e in examples))  # a paragraph, many questions
  context_index = {c: i for i, c in enumerate(unique_contexts)}
  contexts = pipeline.encode_in_chunks(
    lambda chunk: encode_with_offsets(tokenizer, chunk), unique_contexts
  )

  rows: list[tuple[int, ...]] = []  # example, length, context offset/length, doc start, labels
  tokens_list: list[list[int]] = []
  num_outside = num_not_found = 0
  for i, example in enumerate(examples):
    question = questions[i][:max_query_length]
    doc_ids, offsets = contexts[context_index[example.context]]
    answer = _answer_tokens(example, offsets)
    if example.answers and answer is None:
      num_not_found += 1
    first = len(question) + 2
    for start, length in window_starts(len(doc_ids), max_seq_len - first - 1, doc_stride):
      ids = [tokenizer.cls_id, *question, tokenizer.sep_id]
      ids += [*doc_ids[start : start + length], tokenizer.sep_id]
      label = (0, 0)
      if answer is not None and start <= answer[0] and answer[1] < start + length:
        label = (answer[0] - start + first, answer[1] - start + first)
      else:
        num_outside += 1
      tokens_list.append(ids)
      rows.append((i, len(ids), first, length, start, *label))

  tokens = np.full((len(rows), max_seq_len), tokenizer.pad_id, np.int32)
  for r, ids in enumerate(tokens_list):
    tokens[r, : len(ids)] = ids
  columns = np.array(rows, np.int32).T
  if num_not_found:
    logging.warning("%s: %d answers match no context token (labelled [CLS])", name, num_not_found)
  return SquadFeatures(
    examples=tuple(examples),
    tokens=tokens,
    lengths=columns[1],
    context_offset=columns[2],
    context_length=columns[3],
    doc_start=columns[4],
    start_position=columns[5],
    end_position=columns[6],
    example_index=columns[0],
    context_offsets=tuple(contexts[context_index[e.context]][1] for e in examples),
    num_answer_outside=num_outside,
  )


def _answer_tokens(example: SquadExample, offsets: np.ndarray) -> tuple[int, int] | None:
  """Context token indices of the first and last token of the first answer, or None."""
  if not example.answers:
    return None
  char_start = example.answer_starts[0]
  char_end = char_start + len(example.answers[0])
  first = int(np.searchsorted(offsets[:, 1], char_start, side="right"))  # first end > start
  last = int(np.searchsorted(offsets[:, 0], char_end, side="left")) - 1  # last start < end
  if first > last or first >= len(offsets) or last < 0:
    return None
  return first, last


# ------------------------------------------------------------------------------ TFDS


@dataclasses.dataclass(frozen=True)
class SquadData:
  train: SquadFeatures
  eval: SquadFeatures


def read_examples(source: Iterable[dict[str, Any]], data_config: Any) -> list[SquadExample]:
  """The SquadExamples of TFDS examples (squad's features: id, context, question, answers
  {text, answer_start}), field names from `data_config`, in order."""
  fields = [data_config[key] for key in FIELD_KEYS]
  text = pipeline.as_text
  examples = []
  for example in source:
    id_, question, context, answers = (example[f] for f in fields)
    examples.append(
      SquadExample(
        id=text(id_),
        question=text(question),
        context=text(context),
        answers=tuple(text(a) for a in answers["text"]),
        answer_starts=tuple(int(s) for s in answers["answer_start"]),
      )
    )
  return examples


def prepare_squad_data(data_config: Any, tokenizer: Tokenizer) -> SquadData:
  """Reads a TFDS SQuAD-like dataset by name ("squad", "squad/v2.0") and encodes its splits.

  `data_config` is `config.data`: name, tfds_data_dir, id_field, question_field, context_field,
  answers_field (a sequence of {text, answer_start}), train_split, eval_split, max_seq_len,
  doc_stride, max_query_length. Prepared once as array_record, read with `tfds.data_source`.
  """
  dataset = pipeline.prepare_dataset(data_config, {key: data_config[key] for key in FIELD_KEYS})
  name = dataset.name

  def encode_split(split: str) -> SquadFeatures:
    what = f"split '{split}' of dataset '{name}'"
    examples = read_examples(dataset.examples(split), data_config)
    encoded = encode_examples(
      tokenizer,
      examples,
      max_seq_len=data_config.max_seq_len,
      doc_stride=data_config.doc_stride,
      max_query_length=data_config.max_query_length,
      name=what,
    )
    logging.info(
      "Encoded %s: %d questions in %d windows, %d of them labelled [CLS] (max_seq_len=%d, "
      "doc_stride=%d)",
      what,
      len(examples),
      len(encoded),
      encoded.num_answer_outside,
      data_config.max_seq_len,
      data_config.doc_stride,
    )
    return encoded

  return SquadData(
    train=encode_split(data_config.train_split), eval=encode_split(data_config.eval_split)
  )


# ------------------------------------------------------------------------------ predictions


def best_answers(
  features: SquadFeatures,
  scores: np.ndarray,
  starts: np.ndarray,
  ends: np.ndarray,
  null_scores: np.ndarray | None = None,
  null_score_diff_threshold: float = 0.0,
) -> dict[str, str]:
  """Each example's answer text: its windows' best span (scores/starts/ends per window, [n];
  a score of -inf means no span, as `tfjax.tasks.question_answering.best_spans` gives).

  With `null_scores` (SQuAD 2.0: each window's [CLS] start + end logit), an example answers ""
  when its smallest null score beats its best span by more than `null_score_diff_threshold`
  (Google's run_squad.py --version_2_with_negative).
  """
  if not len(scores) == len(starts) == len(ends) == len(features):
    raise ValueError(
      f"{len(scores)} scores, {len(starts)} starts and {len(ends)} ends for {len(features)} "
      "windows; give one of each per window"
    )
  best: dict[int, tuple[float, int]] = {}
  null: dict[int, float] = {}
  for w in range(len(features)):
    example = int(features.example_index[w])
    if example not in best or scores[w] > best[example][0]:
      best[example] = (float(scores[w]), w)
    if null_scores is not None:
      null[example] = min(null.get(example, np.inf), float(null_scores[w]))
  answers = {}
  for example, (score, w) in sorted(best.items()):
    # -inf: no span allowed in any window (an empty context).
    text = features.answer_text(w, int(starts[w]), int(ends[w])) if np.isfinite(score) else ""
    if null_scores is not None and null[example] - score > null_score_diff_threshold:
      text = ""
    answers[features.examples[example].id] = text
  return answers
