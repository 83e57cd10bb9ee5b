"""GPT-1's input transformations (Radford et al. 2018, Figure 1) against hand-built sequences."""

import numpy as np
import pytest

from tfjax.data import gpt_inputs
from tfjax.data.gpt_inputs import SpecialTokens

S = SpecialTokens.after_vocab(100)  # start 100, delimiter 101, extract 102


def test_the_added_tokens_follow_the_pretrained_vocabulary():
  assert (S.start, S.delimiter, S.extract) == (100, 101, 102)


def test_classification_is_start_text_extract_cut_at_the_end():
  assert gpt_inputs.classification_sequence([5, 6, 7], S, 8) == [100, 5, 6, 7, 102]
  assert gpt_inputs.classification_sequence([5, 6, 7, 8, 9], S, 5) == [100, 5, 6, 7, 102]


def test_entailment_is_start_premise_delim_hypothesis_extract_cut_longest_first():
  assert gpt_inputs.pair_sequence([1, 2], [3], S, 10) == [100, 1, 2, 101, 3, 102]
  # 5 + 2 tokens into 7 - 3 = 4: the longer premise loses 3, the hypothesis keeps both.
  assert gpt_inputs.pair_sequence([1, 2, 3, 4, 5], [8, 9], S, 7) == [100, 1, 2, 101, 8, 9, 102]


def test_similarity_gives_both_orders():
  ab, ba = gpt_inputs.similarity_sequences([1, 2], [3], S, 10)
  assert ab == [100, 1, 2, 101, 3, 102] and ba == [100, 3, 101, 1, 2, 102]
  assert gpt_inputs.similarity_sequences([3], [1, 2], S, 10) == (ba, ab)  # swapped: swapped


def test_multiple_choice_is_one_sequence_per_answer_in_order():
  got = gpt_inputs.multiple_choice_sequences([1, 2], [[7], [8, 9]], S, 10)
  assert got == [[100, 1, 2, 101, 7, 102], [100, 1, 2, 101, 8, 9, 102]]


def test_pack_pads_and_marks_the_extract_token_and_the_lm_targets():
  batch = gpt_inputs.pack([[100, 5, 102], [100, 1, 101, 3, 102]], 6, pad_id=0)
  np.testing.assert_array_equal(batch["tokens"], [[100, 5, 102, 0, 0, 0], [100, 1, 101, 3, 102, 0]])
  np.testing.assert_array_equal(batch["extract_positions"], [2, 4])
  assert (batch["tokens"][[0, 1], batch["extract_positions"]] == S.extract).all()
  np.testing.assert_array_equal(batch["lm_weights"], [[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0]])


@pytest.mark.parametrize(
  "call, message",
  [
    (lambda: gpt_inputs.classification_sequence([], S, 8), r"the text is empty"),
    (lambda: gpt_inputs.pair_sequence([1], [], S, 8), r"the second text is empty"),
    (lambda: gpt_inputs.pair_sequence([1], [2], S, 4), r"max_len=4 leaves no room .* max_len >= 5"),
    (lambda: gpt_inputs.multiple_choice_sequences([1], [], S, 8), r"has no answers"),
    (lambda: gpt_inputs.pack([[1] * 7], 6, 0), r"sequence 0 has 7 tokens; rows hold 2 to 6"),
  ],
  ids=["empty_text", "empty_side", "too_short", "no_answers", "too_long"],
)
def test_bad_inputs_are_one_line_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call()
