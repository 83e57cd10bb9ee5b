"""Prompt -> response inputs against hand-built token lists: the separator and EOS after the
vocabulary, prompts cut from their start, weights on the response, packed and padded rows, and
the one-line errors."""

import logging

import ml_collections
import numpy as np
import pytest

from tfjax.data import prompt_response as pr


class WordTokenizer:
  """One id per known word (the Tokenizer protocol, nothing more): ids 0..3 are pad, unk, bos
  and eos when `eos` is True, else pad and unk only."""

  def __init__(self, words: list[str], eos: bool = True):
    specials = ["<pad>", "<unk>", "<s>", "</s>"] if eos else ["<pad>", "<unk>"]
    self.pieces = specials + words
    self.pad_id, self.unk_id = 0, 1
    self.bos_id, self.eos_id = (2, 3) if eos else (None, None)

  @property
  def vocab_size(self) -> int:
    return len(self.pieces)

  def encode(self, text: str) -> list[int]:
    return [self.pieces.index(w) if w in self.pieces else self.unk_id for w in text.split()]

  def encode_batch(self, texts):
    return [self.encode(t) for t in texts]

  def decode(self, ids) -> str:
    return " ".join(self.pieces[i] for i in ids if i > 3 or i == 1)


WORDS = "a b c d e f g h i j".split()
TOKENIZER = WordTokenizer(WORDS)  # a = 4, ..., j = 13; vocab 14
TOKENS = pr.PromptTokens(separator=20, eos=3, added=("<summarize>",))


def test_the_separator_follows_the_model_vocabulary_and_eos_is_the_tokenizer_s():
  tokens = pr.prompt_tokens(TOKENIZER, vocab_size=16, separator="<summarize>")  # a padded table
  assert (tokens.separator, tokens.eos, tokens.added) == (16, 3, ("<summarize>",))


def test_a_tokenizer_without_eos_gets_one_added_after_the_separator():
  tokens = pr.prompt_tokens(WordTokenizer(WORDS, eos=False), 12, "<summarize>")
  assert (tokens.separator, tokens.eos, tokens.added) == (12, 13, ("<summarize>", "<eos>"))
  assert tokens.num_added == 2


def test_a_prompt_too_long_is_cut_from_its_start_keeping_separator_and_response():
  prompt, response = list(range(4, 14)), [7, 8, 9]  # 10 + 1 + 3 inputs into 8
  kept = pr.cut_prompt(prompt, len(response), 8)
  assert kept == [10, 11, 12, 13]  # the end of the prompt: the part next to the separator
  sequence = pr.example_sequence(kept, response, TOKENS)
  assert sequence == [10, 11, 12, 13, 20, 7, 8, 9, 3] and len(sequence) - 1 == 8
  assert pr.cut_prompt(prompt, 3, 14) == prompt  # fits: unchanged
  assert pr.cut_prompt(prompt, 7, 8) == []  # the response alone fills the row
  assert pr.cut_prompt(prompt, 8, 8) is None  # even an empty prompt leaves no room
  assert pr.cut_prompt(prompt, 3, 8, cut_from="end") == [4, 5, 6, 7]  # its beginning instead


def test_encoding_counts_and_logs_the_cut_prompts(caplog):
  prompts, responses = ["a b c d e f g", "a b"], ["h i", "j"]
  with caplog.at_level(logging.WARNING):
    encoded = pr.encode_pairs(TOKENIZER, TOKENS, prompts, responses, max_seq_len=6, name="x")
  assert encoded.num_cut == 1 and encoded.num_dropped == 0
  assert "Cut the prompts of 1 of 2 pairs of x from their start" in caplog.text
  # "a b c d e f g" -> its last 3 tokens, then <sep> h i <eos>.
  np.testing.assert_array_equal(encoded.sequences[0], [8, 9, 10, 20, 11, 12, 3])
  np.testing.assert_array_equal(encoded.sequences[1], [4, 5, 20, 13, 3])
  assert encoded.separators == [3, 2]


def test_a_response_too_long_alone_is_dropped_and_counted_or_refused(caplog):
  prompts, responses = ["a", "b"], ["c d e f g h", "c"]
  with caplog.at_level(logging.WARNING):
    encoded = pr.encode_pairs(TOKENIZER, TOKENS, prompts, responses, max_seq_len=6, name="x")
  assert len(encoded) == 1 and encoded.num_dropped == 1
  assert "Dropped 1 of 2 pairs of x whose response does not fit" in caplog.text
  with pytest.raises(ValueError, match=r"^pair 0 of x needs 8 inputs .* data.max_seq_len=6; "):
    pr.encode_pairs(TOKENIZER, TOKENS, prompts, responses, max_seq_len=6, truncate=False, name="x")


def test_a_prompt_too_long_is_refused_without_truncation():
  with pytest.raises(ValueError, match=r"^pair 0 of x needs 7 inputs .*data.truncate=True to cut"):
    pr.encode_pairs(TOKENIZER, TOKENS, ["a b c d e"], ["f"], max_seq_len=6, truncate=False,
                    name="x")  # fmt: skip


def test_an_empty_response_is_a_one_line_error_naming_the_pair():
  with pytest.raises(
    ValueError, match=r"^pair 1 of x has a response that encodes to no tokens; fill or remove it$"
  ) as caught:
    pr.encode_pairs(TOKENIZER, TOKENS, ["a", "b"], ["c", ""], max_seq_len=8, name="x")
  assert "\n" not in str(caught.value)


def _encoded(*sequences_and_separators):
  sequences = [np.asarray(s, np.int32) for s, _ in sequences_and_separators]
  return pr.EncodedPairs(sequences, [k for _, k in sequences_and_separators], 0, 0)


# Three examples: p p <sep> r <eos> (4 inputs), p <sep> r r <eos> (4), <sep> r <eos> (2).
EXAMPLES = _encoded(([5, 6, 20, 7, 3], 2), ([8, 20, 9, 10, 3], 1), ([20, 11, 3], 0))


def test_weights_are_one_on_the_response_targets_and_eos_only():
  rows = pr.pack(EXAMPLES, 5, packing=False)
  np.testing.assert_array_equal(rows["inputs"][0], [5, 6, 20, 7, 0])
  np.testing.assert_array_equal(rows["targets"][0], [6, 20, 7, 3, 0])
  # Input <sep> predicts the first response token: weighted; the prompt's next tokens are not.
  np.testing.assert_array_equal(rows["weights"][0], [0, 0, 1, 1, 0])
  weighted = [rows["targets"][r][rows["weights"][r] > 0].tolist() for r in range(3)]
  assert weighted == [[7, 3], [9, 10, 3], [11, 3]]  # each response, then EOS


def test_packed_rows_hold_examples_end_to_end_with_their_own_segments_and_positions():
  rows = pr.pack(EXAMPLES, 8, pad_id=0, packing=True)
  # 4 + 4 inputs fill row 0; the third example starts row 1.
  np.testing.assert_array_equal(rows["inputs"], [[5, 6, 20, 7, 8, 20, 9, 10],
                                                 [20, 11, 0, 0, 0, 0, 0, 0]])  # fmt: skip
  np.testing.assert_array_equal(rows["segment_ids"], [[1, 1, 1, 1, 2, 2, 2, 2],
                                                      [1, 1, 0, 0, 0, 0, 0, 0]])  # fmt: skip
  np.testing.assert_array_equal(rows["positions"], [[0, 1, 2, 3, 0, 1, 2, 3],
                                                    [0, 1, 0, 0, 0, 0, 0, 0]])  # fmt: skip
  np.testing.assert_array_equal(rows["weights"], [[0, 0, 1, 1, 0, 1, 1, 1],
                                                  [1, 1, 0, 0, 0, 0, 0, 0]])  # fmt: skip
  padded = pr.pack(EXAMPLES, 8, packing=False)
  assert padded["inputs"].shape == (3, 8)
  assert rows["weights"].sum() == padded["weights"].sum() == 7
  np.testing.assert_array_equal(padded["segment_ids"].max(axis=1), [1, 1, 1])


@pytest.mark.parametrize(
  "overrides, message",
  [
    ({"separator": ""}, r"data.separator is empty; name the separator token"),
    ({"max_seq_len": 1}, r"data.max_seq_len=1 leaves no room for the separator and one response"),
    ({"response_field": "extract"}, r"data.prompt_field and data.response_field are both"),
    ({"prompt_field": ""}, r"data.prompt_field is empty"),
    ({"cut_from": "middle"}, r"data.cut_from='middle': use 'start' .* or 'end'"),
  ],
)
def test_a_bad_data_config_is_a_one_line_error(overrides, message):
  config = ml_collections.ConfigDict(
    dict(prompt_field="extract", response_field="description", separator="<summarize>",
         max_seq_len=8, cut_from="start")
  )  # fmt: skip
  config.update(overrides)
  with pytest.raises(ValueError, match=message) as caught:
    pr.check_data_config(config)
  assert "\n" not in str(caught.value)


def test_a_separator_the_vocabulary_already_has_is_refused():
  with pytest.raises(ValueError, match=r"data.separator='c' is already a piece .* \(id 6\)"):
    pr.prompt_tokens(TOKENIZER, 14, "c")
  with pytest.raises(ValueError, match=r"data.separator='<eos>' is the name of the EOS token"):
    pr.prompt_tokens(WordTokenizer(WORDS, eos=False), 12, "<eos>")
