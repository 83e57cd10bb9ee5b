"""GPT fine-tuning rows from texts: each transformation's encoded rows against hand-built ones,
truncation counted or refused, and the config checks."""

import ml_collections
import numpy as np
import pytest

from tests.data.test_classification import WordTokenizer
from tfjax.data import gpt_fine_tuning
from tfjax.data.gpt_inputs import SpecialTokens

S = SpecialTokens.after_vocab(100)  # start 100, delimiter 101, extract 102


def encode(transformation, texts, second=None, max_seq_len=8, **kwargs):
  tokenizer = WordTokenizer()
  labels = np.zeros(len(texts), np.int32)
  return gpt_fine_tuning.encode_examples(
    tokenizer, S, transformation, texts, labels, max_seq_len=max_seq_len, second=second, **kwargs
  )


def test_each_transformation_gives_the_rows_of_figure_1():
  # WordTokenizer ids: 10, 11, ... in order of first sight; pad 0.
  rows = encode("classification", ["a b c"])
  np.testing.assert_array_equal(rows.tokens, [[[100, 10, 11, 12, 102, 0, 0, 0]]])
  np.testing.assert_array_equal(rows.extract_positions, [[4]])
  np.testing.assert_array_equal(rows.lm_weights[0, 0], [1, 1, 1, 1, 0, 0, 0, 0])
  rows = encode("entailment", ["a b"], ["c"])
  np.testing.assert_array_equal(rows.tokens, [[[100, 10, 11, 101, 12, 102, 0, 0]]])
  rows = encode("similarity", ["a b"], ["c"])
  np.testing.assert_array_equal(
    rows.tokens[0], [[100, 10, 11, 101, 12, 102, 0, 0], [100, 12, 101, 10, 11, 102, 0, 0]]
  )
  np.testing.assert_array_equal(rows.extract_positions, [[5, 5]])
  rows = encode("multiple_choice", ["a"], [["b", "c d"]], num_choices=2)
  np.testing.assert_array_equal(
    rows.tokens[0], [[100, 10, 101, 11, 102, 0, 0, 0], [100, 10, 101, 12, 13, 102, 0, 0]]
  )
  np.testing.assert_array_equal(rows.extract_positions, [[4, 5]])


def test_too_long_examples_are_cut_and_counted_or_refused():
  rows = encode("entailment", ["a b c d e", "a"], ["f g", "b"], max_seq_len=7)
  assert rows.num_truncated == 1
  np.testing.assert_array_equal(rows.tokens[0, 0], [100, 10, 11, 101, 15, 16, 102])
  with pytest.raises(ValueError, match=r"^example 0 of the examples has 10 tokens with the added"):
    encode("entailment", ["a b c d e"], ["f g"], max_seq_len=7, truncate=False)


def test_fewer_answers_than_num_choices_is_an_error_naming_the_example():
  with pytest.raises(ValueError, match=r"example 1 of the examples has 1 answers, fewer than"):
    encode("multiple_choice", ["a", "b"], [["c", "d"], ["e"]], num_choices=2)


def _data(**values):
  base = dict(transformation="classification", text_field="text", text_pair_field="",
              choices_field="", num_choices=0, max_seq_len=16)  # fmt: skip
  return ml_collections.ConfigDict({**base, **values})


@pytest.mark.parametrize(
  "values, message",
  [
    ({"transformation": "entailment"}, r"data.transformation='entailment' reads data.text_pair"),
    ({"choices_field": "answers"}, r"data.choices_field='answers' is set, but data.transfor"),
    (
      {"transformation": "multiple_choice", "choices_field": "answers", "num_choices": 1},
      r"data.num_choices=1: a multiple-choice question needs >= 2 answers",
    ),
  ],
)
def test_a_config_that_does_not_fit_its_transformation_is_refused(values, message):
  with pytest.raises(ValueError, match=message):
    gpt_fine_tuning.check_data_config(_data(**values))
  assert gpt_fine_tuning.sequences_per_example(_data(transformation="similarity")) == 2
