"""Tests of classification inputs: [CLS]/[SEP] rows, truncation, errors, TFDS reading, batches."""

import json

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests.tiny_datasets import tiny_builder
from tfjax.data import classification, pipeline

PAD, UNK, CLS, SEP = 0, 1, 2, 3


class WordTokenizer:
  """A whitespace tokenizer with a growing vocabulary: ids are easy to read back in tests."""

  pad_id, cls_id, sep_id = PAD, CLS, SEP

  def __init__(self):
    self.vocab: dict[str, int] = {}

  def encode(self, text: str) -> list[int]:
    return [self.vocab.setdefault(w, 10 + len(self.vocab)) for w in text.split()]

  def encode_batch(self, texts):
    return [self.encode(t) for t in texts]

  def decode(self, ids) -> str:
    words = {i: w for w, i in self.vocab.items()}
    return " ".join(words[int(i)] for i in ids if i >= 10)


def encode(texts, labels=None, names=("neg", "pos"), max_seq_len=8, pairs=None, truncate=True):
  tok = WordTokenizer()
  labels = [0] * len(texts) if labels is None else labels
  examples = classification.encode_examples(
    tok, texts, labels, names, max_seq_len=max_seq_len, text_pairs=pairs, truncate=truncate
  )
  return tok, examples


# --- rows, segments, masks ------------------------------------------------------------------


def test_single_text_row_is_cls_text_sep_then_padding():
  tok, ex = encode(["a b c"], labels=["pos"])
  a, b, c = tok.encode("a b c")
  np.testing.assert_array_equal(ex.tokens, [[CLS, a, b, c, SEP, PAD, PAD, PAD]])
  np.testing.assert_array_equal(ex.segment_ids, [[0] * 8])
  np.testing.assert_array_equal(ex.attention_mask, [[1, 1, 1, 1, 1, 0, 0, 0]])
  np.testing.assert_array_equal(ex.label, [1])
  assert ex.tokens.dtype == ex.segment_ids.dtype == ex.attention_mask.dtype == np.int32
  assert ex.num_truncated == 0


def test_pair_row_has_segment_one_on_the_second_text_and_its_sep():
  tok, ex = encode(["a b"], pairs=["c"], max_seq_len=8)
  a, b, c = tok.encode("a b c")
  np.testing.assert_array_equal(ex.tokens, [[CLS, a, b, SEP, c, SEP, PAD, PAD]])
  np.testing.assert_array_equal(ex.segment_ids, [[0, 0, 0, 0, 1, 1, 0, 0]])
  np.testing.assert_array_equal(ex.attention_mask, [[1, 1, 1, 1, 1, 1, 0, 0]])


def test_label_names_and_label_ids_give_the_same_labels():
  names = ("a", "b", "c")
  _, by_name = encode(["x", "y", "z"], labels=["c", b"a", "b"], names=names)
  _, by_id = encode(["x", "y", "z"], labels=np.array([2, 0, 1]), names=names)
  np.testing.assert_array_equal(by_name.label, [2, 0, 1])
  np.testing.assert_array_equal(by_id.label, by_name.label)


# --- truncation -----------------------------------------------------------------------------


def google_truncate_seq_pair(tokens_a: list, tokens_b: list, max_length: int) -> None:
  """Google BERT's run_classifier._truncate_seq_pair, verbatim: the reference."""
  while True:
    total_length = len(tokens_a) + len(tokens_b)
    if total_length <= max_length:
      break
    if len(tokens_a) > len(tokens_b):
      tokens_a.pop()
    else:
      tokens_b.pop()


def test_pair_truncation_matches_google_berts_loop():
  for budget in range(2, 12):
    for len_a in range(14):
      for len_b in range(14):
        a, b = list(range(len_a)), list(range(len_b))
        google_truncate_seq_pair(a, b, budget)
        assert classification.truncate_pair_lengths(len_a, len_b, budget) == (len(a), len(b))


def test_truncated_examples_are_counted_and_cut_at_the_end():
  texts = ["w1 w2 w3 w4 w5 w6 w7 w8", "short", "x1 x2 x3 x4 x5 x6 x7"]
  tok, ex = encode(texts, max_seq_len=8)  # room for 6 text tokens
  assert ex.num_truncated == 2
  assert tok.decode(ex.tokens[0]) == "w1 w2 w3 w4 w5 w6"
  assert tok.decode(ex.tokens[2]) == "x1 x2 x3 x4 x5 x6"
  assert ex.tokens[0, -1] == SEP and ex.attention_mask.sum(axis=1).tolist() == [8, 3, 8]
  tok, pairs = encode(["a1 a2 a3 a4 a5", "a"], pairs=["b1 b2", "b"], max_seq_len=7)
  a1, a2, _, _, _, b1, b2 = tok.encode("a1 a2 a3 a4 a5 b1 b2")
  np.testing.assert_array_equal(pairs.tokens[0], [CLS, a1, a2, SEP, b1, b2, SEP])
  assert pairs.num_truncated == 1


def test_truncate_false_names_the_longest_example_and_max_seq_len():
  texts = ["a b c d e f g", "ok", "a b c d e f g h i"]
  with pytest.raises(
    ValueError, match=r"example 2 of the examples has 11 tokens .* max_seq_len=8 \(2 examples"
  ):
    encode(texts, max_seq_len=8, truncate=False)
  _, ex = encode(texts, max_seq_len=11, truncate=False)
  assert ex.num_truncated == 0


def test_max_seq_len_without_room_for_text_is_an_error():
  with pytest.raises(ValueError, match=r"max_seq_len=4 .* use max_seq_len >= 5"):
    encode(["a"], pairs=["b"], max_seq_len=4)


# --- errors ---------------------------------------------------------------------------------


def test_empty_text_error_names_the_example_index():
  with pytest.raises(ValueError, match=r"example 1 of the examples has an empty text \(' '"):
    encode(["fine", " ", "also fine"])


def test_empty_side_of_a_pair_error_names_the_example_index():
  with pytest.raises(ValueError, match=r"example 2 of the examples has an empty text_pair"):
    encode(["a", "b", "c"], pairs=["x", "y", ""])


def test_unknown_label_name_lists_the_known_labels():
  with pytest.raises(
    ValueError, match=r"example 1 has the unknown label 'meh'; the known labels are \['neg', 'pos'"
  ):
    encode(["a", "b"], labels=["pos", "meh"])


def test_label_id_out_of_range_is_an_error():
  with pytest.raises(ValueError, match=r"example 0 has label id -1, outside \[0, 2\)"):
    encode(["a"], labels=[-1])


# --- grain train iterator and eval batches --------------------------------------------------


def numbered_examples(n: int):
  """Example i is the text "w{i}" (token id 10 + i) with label i % 3."""
  _, ex = encode([f"w{i}" for i in range(n)], [i % 3 for i in range(n)], ("a", "b", "c"))
  return ex


def example_ids(batches):
  return [int(row[1]) - 10 for b in batches for row in b["tokens"]]


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def assert_same_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b, strict=True):
    assert x.keys() == y.keys() == set(classification.FEATURES)
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])


def test_train_batches_have_fixed_shapes_and_rows_are_whole_examples():
  ex = numbered_examples(20)
  batches = take(classification.train_iterator(ex, 4, seed=0), 3)
  for batch in batches:
    assert batch["tokens"].shape == batch["segment_ids"].shape == batch["attention_mask"].shape
    assert batch["tokens"].shape == (4, 8)
    assert batch["label"].shape == batch["weights"].shape == (4,)
    np.testing.assert_array_equal(batch["weights"], 1.0)
    for row, label in zip(batch["tokens"], batch["label"], strict=True):
      assert label == (int(row[1]) - 10) % 3


def test_each_epoch_is_a_fresh_permutation_and_seeds_differ():
  ex = numbered_examples(24)
  ids = example_ids(take(classification.train_iterator(ex, 4, seed=0), 12))
  assert sorted(ids[:24]) == sorted(ids[24:]) == list(range(24))
  assert ids[:24] != ids[24:] and ids[:24] != list(range(24))
  other = example_ids(take(classification.train_iterator(ex, 4, seed=1), 6))
  assert other != ids[:24]
  assert ids == example_ids(take(classification.train_iterator(ex, 4, seed=0), 12))


def test_restoring_the_iterator_state_gives_the_same_next_batches():
  ex = numbered_examples(15)  # batches of 4 cross epoch boundaries
  iterator = classification.train_iterator(ex, 4, seed=5)
  take(iterator, 7)
  state = json.loads(json.dumps(iterator.get_state()))  # survives a JSON round trip
  expected = take(iterator, 8)
  restored = classification.train_iterator(ex, 4, seed=5)
  restored.set_state(state)
  assert_same_batches(take(restored, 8), expected)


def test_process_shards_are_disjoint_and_cover_every_example():
  ex = numbered_examples(24)
  shards = [
    example_ids(
      take(classification.train_iterator(ex, 4, seed=2, process_index=p, process_count=2), 3)
    )
    for p in range(2)
  ]
  assert len(set(shards[0])) == len(set(shards[1])) == 12
  assert sorted(shards[0] + shards[1]) == list(range(24))


def test_eval_batches_hold_every_example_once_and_pad_with_weight_zero():
  ex = numbered_examples(10)
  batches = pipeline.eval_batches(ex, 4)
  assert len(batches) == 3
  assert all(b["tokens"].shape == (4, 8) for b in batches)
  weights = np.concatenate([b["weights"] for b in batches])
  np.testing.assert_array_equal(weights, [1] * 10 + [0, 0])
  ids = example_ids(batches)
  assert ids[:10] == list(range(10))
  np.testing.assert_array_equal(batches[-1]["attention_mask"][2:], ex.attention_mask[[0, 0]])
  # A weighted mean over the batches counts each example exactly once.
  labels = np.concatenate([b["label"] for b in batches])
  assert (labels * weights).sum() / weights.sum() == pytest.approx(ex.label.mean())
  assert len(pipeline.eval_batches(ex, 5)) == 2


# --- TFDS datasets by name ------------------------------------------------------------------


def data_config(**overrides) -> ml_collections.ConfigDict:
  config = dict(
    name="rotten_tomatoes",
    tfds_data_dir="",
    text_field="text",
    text_pair_field="",
    label_field="label",
    train_split="train",
    eval_split="validation",
    test_split="test",
    max_seq_len=16,
    truncate=True,
  )
  config.update(overrides)
  return ml_collections.ConfigDict(config)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
  return str(tmp_path_factory.mktemp("tfds"))


def test_prepare_reads_rotten_tomatoes_by_name(data_dir):
  tok = WordTokenizer()
  data = classification.prepare_classification_data(data_config(tfds_data_dir=data_dir), tok)
  assert data.label_names == ("rotten", "fresh") and data.num_labels == 2
  builder = tfds.builder("rotten_tomatoes", data_dir=data_dir)
  for split, examples in (("validation", data.eval), ("test", data.test)):
    source = builder.as_data_source(split=split)
    assert len(examples) == len(source)
    for i in range(0, len(source), 97):
      words = source[i]["text"].decode("utf-8").split()
      assert tok.decode(examples.tokens[i]) == " ".join(words[:14])
      assert examples.label[i] == source[i]["label"]
  assert len(data.train) == 10_184
  long_texts = [len(t.split()) > 14 for t in _texts(builder, "validation")]
  assert data.eval.num_truncated == sum(long_texts) > 0


def _texts(builder, split):
  source = builder.as_data_source(split=split)
  return [source[i]["text"].decode("utf-8") for i in range(len(source))]


def _pair(premise, hypothesis, label, idx):
  return {"premise": premise, "hypothesis": hypothesis, "label": label, "idx": idx}


# Sentence pairs with a ClassLabel, a plain-int field, and a split with an empty hypothesis.
tiny_builder(
  "tiny_pairs",
  {
    "premise": tfds.features.Text(),
    "hypothesis": tfds.features.Text(),
    "label": tfds.features.ClassLabel(names=["entailment", "neutral", "contradiction"]),
    "idx": tfds.features.Scalar(np.int32),
  },
  {
    "train": [_pair(f"p{i} p", f"h{i}", i % 3, i) for i in range(12)],
    "broken": [_pair("p", "h", 0, 0), _pair("p", "", 1, 1)],
  },
)


def pairs_config(data_dir, **overrides):
  config = dict(
    name="tiny_pairs",
    tfds_data_dir=data_dir,
    text_field="premise",
    text_pair_field="hypothesis",
    train_split="train",
    eval_split="train[:5]",
    test_split="",
  )
  return data_config(**{**config, **overrides})


def test_prepare_encodes_pairs_with_segments(data_dir):
  tok = WordTokenizer()
  data = classification.prepare_classification_data(pairs_config(data_dir), tok)
  assert data.test is None and len(data.eval) == 5 and len(data.train) == 12
  source = tfds.builder("tiny_pairs", data_dir=data_dir).as_data_source(split="train")
  for i in range(12):
    ex = source[i]
    premise, hypothesis = ex["premise"].decode(), ex["hypothesis"].decode()
    expected = [CLS, *tok.encode(premise), SEP, *tok.encode(hypothesis), SEP]
    np.testing.assert_array_equal(data.train.tokens[i, : len(expected)], expected)
    np.testing.assert_array_equal(data.train.segment_ids[i, :6], [0, 0, 0, 0, 1, 1])
    assert data.train.label[i] == ex["label"]


def test_prepare_errors_name_the_split_field_and_fix(data_dir):
  tok = WordTokenizer()
  with pytest.raises(ValueError, match=r"example 1 of split 'broken' of dataset 'tiny_pairs'"):
    classification.prepare_classification_data(pairs_config(data_dir, eval_split="broken"), tok)
  with pytest.raises(ValueError, match=r"no feature 'sentence'; its features are \[.*'premise'"):
    classification.prepare_classification_data(pairs_config(data_dir, text_field="sentence"), tok)
  with pytest.raises(ValueError, match=r"'idx' .* is a Scalar, not a ClassLabel"):
    classification.prepare_classification_data(pairs_config(data_dir, label_field="idx"), tok)
  with pytest.raises(ValueError, match=r"no split 'validation'; its splits are \['train', 'b"):
    classification.prepare_classification_data(pairs_config(data_dir, eval_split="validation"), tok)
