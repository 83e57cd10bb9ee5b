"""GPT-1's input transformations for fine-tuning (Radford et al. 2018, §3.3, Figure 1).

A pre-trained causal LM reads one contiguous token sequence, so structured inputs are turned
into sequences with three tokens added to the vocabulary: start, delimiter and extract. The
task head reads the final hidden state of the extract token.

  classification   [start] text [extract]
  entailment       [start] premise [delim] hypothesis [extract]
  similarity       [start] A [delim] B [extract] and [start] B [delim] A [extract] (no natural
                   order: both are encoded and their final states added before the head)
  multiple choice  [start] context [delim] answer_k [extract], one sequence per answer; a logit
                   each, softmax over the answers

Token ids only; `pack` lays sequences out as fixed-length rows. Too long inputs are cut at the end,
the longer side first (as BERT's pairs: `classification.truncate_pair_lengths`).
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

from tfjax.data.classification import truncate_pair_lengths

Ids = Sequence[int]


@dataclasses.dataclass(frozen=True)
class SpecialTokens:
  """The ids of GPT-1's added tokens (`after_vocab`: appended to a vocabulary of `vocab_size`,
  as the authors' code does, so no pre-trained id changes meaning)."""

  start: int
  delimiter: int
  extract: int

  @classmethod
  def after_vocab(cls, vocab_size: int) -> "SpecialTokens":
    return cls(vocab_size, vocab_size + 1, vocab_size + 2)

  def check(self, max_len: int, num_special: int) -> int:
    """The tokens left for text in a sequence of `max_len` with `num_special` added tokens."""
    budget = max_len - num_special
    if budget < num_special - 1:  # at least one token per side
      raise ValueError(
        f"max_len={max_len} leaves no room for text beside the {num_special} added tokens; use "
        f"max_len >= {2 * num_special - 1}"
      )
    return budget


def _nonempty(ids: Ids, side: str) -> list[int]:
  if len(ids) == 0:
    raise ValueError(
      f"the {side} is empty (it encodes to no tokens); remove the example or fill it"
    )
  return list(ids)


def classification_sequence(text: Ids, tokens: SpecialTokens, max_len: int) -> list[int]:
  """[start] text [extract], the text cut to fit `max_len`."""
  text = _nonempty(text, "text")[: tokens.check(max_len, 2)]
  return [tokens.start, *text, tokens.extract]


def pair_sequence(first: Ids, second: Ids, tokens: SpecialTokens, max_len: int) -> list[int]:
  """[start] first [delim] second [extract] (entailment: premise, hypothesis), cut longest
  first to fit `max_len`."""
  first, second = _nonempty(first, "first text"), _nonempty(second, "second text")
  len_a, len_b = truncate_pair_lengths(len(first), len(second), tokens.check(max_len, 3))
  return [tokens.start, *first[:len_a], tokens.delimiter, *second[:len_b], tokens.extract]


def similarity_sequences(
  a: Ids, b: Ids, tokens: SpecialTokens, max_len: int
) -> tuple[list[int], list[int]]:
  """Both orders, [start] A [delim] B [extract] and [start] B [delim] A [extract]: the model adds
  their final states, so swapping A and B changes nothing."""
  return pair_sequence(a, b, tokens, max_len), pair_sequence(b, a, tokens, max_len)


def multiple_choice_sequences(
  context: Ids, answers: Sequence[Ids], tokens: SpecialTokens, max_len: int
) -> list[list[int]]:
  """[start] context [delim] answer_k [extract] for each answer, in the answers' order."""
  if not answers:
    raise ValueError("a multiple-choice example has no answers; give at least one")
  return [pair_sequence(context, answer, tokens, max_len) for answer in answers]


def pack(sequences: Sequence[Ids], max_len: int, pad_id: int) -> dict[str, np.ndarray]:
  """Rows of `max_len`: "tokens" [n, max_len] int32 (then pad_id), "extract_positions" [n] (the
  last real token: the extract token), "lm_weights" [n, max_len] float32: 1 where the next token
  is a real one, for the auxiliary LM loss over real tokens only (§3.2, Eq. 5)."""
  n = len(sequences)
  tokens = np.full((n, max_len), pad_id, np.int32)
  lm_weights = np.zeros((n, max_len), np.float32)
  positions = np.zeros((n,), np.int32)
  for i, sequence in enumerate(sequences):
    if not 2 <= len(sequence) <= max_len:
      raise ValueError(f"sequence {i} has {len(sequence)} tokens; rows hold 2 to {max_len}")
    tokens[i, : len(sequence)] = sequence
    lm_weights[i, : len(sequence) - 1] = 1.0  # position t predicts token t + 1
    positions[i] = len(sequence) - 1
  return {"tokens": tokens, "extract_positions": positions, "lm_weights": lm_weights}
