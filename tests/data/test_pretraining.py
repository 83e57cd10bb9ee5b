"""BERT MLM + NSP examples: pair structure, NSP and masking rates, truncation, the cached corpus and
the grain pipelines (determinism, epochs, sharding, exact resume)."""

import json
import random
import types

import ml_collections
import numpy as np
import pytest

from tfjax.data import pretraining
from tfjax.data.pretraining import PretrainingOptions, TokenizedDocuments
from tfjax.data.sentences import split_sentences

FIRST_ID = 5  # after [PAD], [UNK], [CLS], [SEP], [MASK] = 0..4
CLS, SEP, MASK = 2, 3, 4


def stub_tokenizer(vocab_size: int) -> types.SimpleNamespace:
  """The ids the example maker reads from a BertTokenizer."""
  return types.SimpleNamespace(
    pad_id=0, unk_id=1, cls_id=2, sep_id=3, mask_id=4, vocab_size=vocab_size
  )


def synthetic_documents(seed: int, num_docs: int, max_sentences: int, lengths: tuple[int, int]):
  """Documents whose every token is FIRST_ID + its sentence's index: an example tells which
  sentences (and so documents) it was made from. Some documents have one sentence."""
  rng = np.random.default_rng(seed)
  documents, sentence = [], 0
  for _ in range(num_docs):
    doc = []
    for _ in range(rng.integers(1, max_sentences + 1)):
      doc.append([FIRST_ID + sentence] * int(rng.integers(lengths[0], lengths[1] + 1)))
      sentence += 1
    documents.append(doc)
  return TokenizedDocuments.from_lists(documents)


# Short documents and max_seq_len 64: no pair ever needs truncating (records <= 20 tokens,
# a NotNext B is at most one document).
SHORT_DOCS = synthetic_documents(0, num_docs=60, max_sentences=5, lengths=(2, 4))
SHORT_CONFIG = ml_collections.ConfigDict(
  dict(train_split="train", eval_split="train", max_seq_len=64, max_predictions_per_seq=10)
)
SHORT_OPTIONS = PretrainingOptions.from_config(SHORT_CONFIG)
SHORT_TOKENIZER = stub_tokenizer(FIRST_ID + SHORT_DOCS.num_sentences)
SHORT_DATA = pretraining.PretrainingData(SHORT_TOKENIZER, {"train": SHORT_DOCS}.__getitem__)


def unmasked(example):
  """The example's tokens before masking, and its length."""
  tokens = example["tokens"].copy()
  real = example["masked_weights"] > 0
  tokens[example["masked_positions"][real]] = example["masked_ids"][real]
  return tokens, int(example["attention_mask"].sum())


def pair_sentences(example):
  """Sentence indices of A's and B's tokens."""
  tokens, length = unmasked(example)
  sep = int(np.flatnonzero(tokens[:length] == SEP)[0])
  return tokens[1:sep] - FIRST_ID, tokens[sep + 1 : length - 1] - FIRST_ID


def document_of(documents, sentences):
  return np.searchsorted(documents.document_starts, sentences, side="right") - 1


# --- sentences and records ------------------------------------------------------------------


def test_from_lists_drops_empty_sentences_and_documents():
  docs = TokenizedDocuments.from_lists([[[7, 8], [], [9]], [], [[]], [[10, 11, 12]]])
  assert docs.num_documents == 2 and docs.num_sentences == 3
  np.testing.assert_array_equal(docs.sentences(0, 2), [7, 8, 9])
  np.testing.assert_array_equal(docs.sentences(2, 3), [10, 11, 12])
  assert docs.tokens.dtype == np.int32


def test_records_are_runs_of_two_or_more_sentences_covering_each_document():
  docs = synthetic_documents(1, num_docs=200, max_sentences=12, lengths=(1, 30))
  records = pretraining.document_records(docs, max_num_tokens=40)
  lengths = np.diff(docs.sentence_starts)
  for d in range(docs.num_documents):
    first, end = docs.document_starts[d : d + 2]
    mine = records[records[:, 0] == d]
    if end - first < 2:
      assert len(mine) == 0  # a lone sentence makes no pair
      continue
    # Contiguous runs from the first sentence to the last, each of >= 2 sentences.
    assert mine[0, 1] == first and mine[-1, 2] == end
    np.testing.assert_array_equal(mine[1:, 1], mine[:-1, 2])
    assert np.all(mine[:, 2] - mine[:, 1] >= 2)
    for _, start, stop in mine[:-1]:  # every run but the last closes once it holds 40 tokens
      assert lengths[start:stop].sum() >= 40
      assert stop - start == 2 or lengths[start : stop - 1].sum() < 40


def google_truncated_lengths(len_a: int, len_b: int, max_num_tokens: int) -> tuple[int, int]:
  """create_pretraining_data.truncate_seq_pair's loop, on lengths."""
  while len_a + len_b > max_num_tokens:
    if len_a > len_b:
      len_a -= 1
    else:
      len_b -= 1
  return len_a, len_b


def test_truncation_keeps_the_lengths_of_googles_loop_and_cuts_both_ends():
  rng = np.random.default_rng(0)
  py_rng = random.Random(0)
  fronts = []
  for _ in range(500):
    len_a, len_b, limit = py_rng.randint(1, 60), py_rng.randint(1, 60), py_rng.randint(2, 70)
    a, b = np.arange(len_a), np.arange(100, 100 + len_b)
    ta, tb = pretraining.truncate_seq_pair(a, b, limit, rng)
    assert (len(ta), len(tb)) == google_truncated_lengths(len_a, len_b, limit)
    for kept, full in ((ta, a), (tb, b)):  # a contiguous slice of the original
      np.testing.assert_array_equal(kept, full[kept[0] - full[0] :][: len(kept)])
      if len(kept) < len(full):
        fronts.append((kept[0] - full[0]) / (len(full) - len(kept)))
  assert 0.45 < np.mean(fronts) < 0.55  # each token from the front or back with chance 1/2


# --- examples -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_examples():
  ds = pretraining.pretraining_dataset(SHORT_DOCS, SHORT_TOKENIZER, SHORT_OPTIONS, seed=0)
  return [ds[i] for i in range(4 * len(ds))]  # four epochs


def test_features_have_fixed_shapes_and_dtypes(short_examples):
  t, p = SHORT_OPTIONS.max_seq_len, SHORT_OPTIONS.max_predictions_per_seq
  expected = dict(
    tokens=((t,), np.int32),
    segment_ids=((t,), np.int32),
    attention_mask=((t,), np.int32),
    masked_positions=((p,), np.int32),
    masked_ids=((p,), np.int32),
    masked_weights=((p,), np.float32),
    next_sentence_label=((), np.int32),
  )
  for example in short_examples[:20]:
    assert {k: (v.shape, v.dtype) for k, v in example.items()} == expected


def test_layout_is_cls_a_sep_b_sep_with_segment_ids_at_the_seps(short_examples):
  for example in short_examples:
    tokens, length = unmasked(example)
    seps = np.flatnonzero(tokens == SEP)
    assert tokens[0] == CLS and len(seps) == 2 and seps[1] == length - 1
    assert 1 < seps[0] < length - 2  # A and B each hold a token
    np.testing.assert_array_equal(example["attention_mask"], np.arange(64) < length)
    expected_segments = np.zeros(64, np.int32)
    expected_segments[seps[0] + 1 : length] = 1
    np.testing.assert_array_equal(example["segment_ids"], expected_segments)
    assert np.all(tokens[length:] == 0)  # [PAD]


def test_is_next_b_follows_a_and_not_next_b_comes_from_another_document(short_examples):
  starts = SHORT_DOCS.document_starts
  lengths = np.diff(SHORT_DOCS.sentence_starts)
  record_starts = set(pretraining.document_records(SHORT_DOCS, 61)[:, 1])
  for example in short_examples:
    a, b = pair_sentences(example)
    sentences_a, sentences_b = np.unique(a), np.unique(b)
    assert sentences_a[0] in record_starts  # A opens its record
    # Whole, consecutive sentences (no truncation with these sizes).
    for s, tokens in ((sentences_a, a), (sentences_b, b)):
      np.testing.assert_array_equal(s, np.arange(s[0], s[-1] + 1))
      np.testing.assert_array_equal(tokens, np.repeat(s, lengths[s]))
    doc_a = document_of(SHORT_DOCS, sentences_a)
    doc_b = document_of(SHORT_DOCS, sentences_b)
    assert len(set(doc_a)) == len(set(doc_b)) == 1
    if example["next_sentence_label"] == 0:  # IsNext: the sentences right after A
      assert sentences_b[0] == sentences_a[-1] + 1 and doc_b[0] == doc_a[0]
    else:  # NotNext: a run of another document
      assert doc_b[0] != doc_a[0]
      # Sentences are added until B fills the target length, or its document ends.
      last_length = np.sum(b == sentences_b[-1])
      assert sentences_b[-1] + 1 == starts[doc_b[0] + 1] or len(b) - last_length < 61 - len(a)


def test_next_sentence_labels_are_half_not_next():
  # grain's shuffle is slow on 48 records: the labels do not depend on the order anyway.
  ds = pretraining.pretraining_dataset(SHORT_DOCS, SHORT_TOKENIZER, SHORT_OPTIONS, seed=0)
  labels = np.array([ds[i]["next_sentence_label"] for i in range(3000)])  # many epochs
  assert abs(labels.mean() - 0.5) < 4 * 0.5 / np.sqrt(len(labels))  # 4 standard deviations


def test_masked_predictions_point_at_a_and_b_tokens_only(short_examples):
  for example in short_examples:
    tokens, length = unmasked(example)
    weights = example["masked_weights"]
    n = int(weights.sum())
    np.testing.assert_array_equal(weights, np.arange(10) < n)
    positions = example["masked_positions"][:n]
    assert np.all(np.diff(positions) > 0)  # sorted, distinct
    assert np.all(tokens[positions] >= FIRST_ID)  # never [CLS], [SEP] or [PAD]
    assert np.all(positions < length)
    assert not example["masked_positions"][n:].any() and not example["masked_ids"][n:].any()
    # 15% of the candidates (the count; Google's also counts [CLS] and [SEP]), rounded,
    # at least 1, at most the cap.
    assert n == min(10, max(1, round(0.15 * (length - 3))))


def test_examples_are_deterministic_from_seed_and_new_each_epoch():
  def dataset(seed):
    return pretraining.pretraining_dataset(SHORT_DOCS, SHORT_TOKENIZER, SHORT_OPTIONS, seed=seed)

  ds, again, other = dataset(3), dataset(3), dataset(4)
  n = len(ds)
  for i in (0, 7, n - 1, n + 7):
    assert_same(ds[i], again[i])
  assert any(not same(ds[i], other[i]) for i in range(10))
  assert any(not same(ds[i], ds[i + n]) for i in range(10))  # epoch 2: new pairs, new masks
  for i in range(20):  # the same record: A starts with the record's first sentence
    assert pair_sentences(ds[i])[0][0] == pair_sentences(ds[i + n])[0][0]


def same(x, y):
  return all(np.array_equal(x[k], y[k]) for k in x)


def assert_same(x, y):
  assert x.keys() == y.keys()
  for k in x:
    np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_truncation_keeps_every_example_within_max_seq_len():
  docs = synthetic_documents(2, num_docs=50, max_sentences=6, lengths=(1, 40))
  options = PretrainingOptions(max_seq_len=24, max_predictions_per_seq=3, short_seq_prob=0.0)
  ds = pretraining.pretraining_dataset(
    docs, stub_tokenizer(FIRST_ID + docs.num_sentences), options, seed=0
  )
  lengths = []
  for i in range(2 * len(ds)):
    example = ds[i]
    a, b = pair_sentences(example)
    assert len(a) >= 1 and len(b) >= 1
    lengths.append(len(a) + len(b) + 3)
    assert example["masked_weights"].sum() == min(3, max(1, round(0.15 * (len(a) + len(b)))))
  assert max(lengths) == 24 and np.mean(np.array(lengths) == 24) > 0.8


def test_short_seq_prob_gives_shorter_examples():
  docs = synthetic_documents(3, num_docs=50, max_sentences=10, lengths=(5, 20))
  tokenizer = stub_tokenizer(FIRST_ID + docs.num_sentences)

  def mean_length(short_seq_prob):
    options = PretrainingOptions(max_seq_len=64, short_seq_prob=short_seq_prob)
    ds = pretraining.pretraining_dataset(docs, tokenizer, options, seed=0)
    return np.mean([ds[i]["attention_mask"].sum() for i in range(len(ds))])

  assert mean_length(1.0) < 0.8 * mean_length(0.0)


def test_options_are_validated_with_the_fix():
  with pytest.raises(ValueError, match="max_seq_len=4 cannot hold"):
    PretrainingOptions(max_seq_len=4)
  with pytest.raises(ValueError, match=r"masked_lm_prob=1.5 must be a probability"):
    PretrainingOptions(masked_lm_prob=1.5)
  one = TokenizedDocuments.from_lists([[[5, 6], [7]]])
  with pytest.raises(ValueError, match="at least 2 are needed"):
    pretraining.pretraining_dataset(one, stub_tokenizer(8), PretrainingOptions(), seed=0)
  lone = TokenizedDocuments.from_lists([[[5, 6]], [[7]]])
  with pytest.raises(ValueError, match="no document has 2 or more sentences"):
    pretraining.pretraining_dataset(lone, stub_tokenizer(8), PretrainingOptions(), seed=0)


# --- the real corpus ------------------------------------------------------------------------


def data_config(**overrides) -> ml_collections.ConfigDict:
  config = dict(
    name="wiki_vital_articles",
    text_field="extract",
    train_split="train",
    eval_split="validation",
    tfds_data_dir="",
    cache_dir="",
    tokenizer="sentencepiece",
    max_seq_len=128,
    max_predictions_per_seq=20,
    masked_lm_prob=0.15,
    short_seq_prob=0.1,
  )
  config.update(overrides)
  return ml_collections.ConfigDict(config)


@pytest.fixture(scope="module")
def wiki(wiki_data_dir, tmp_path_factory):
  config = data_config(
    tfds_data_dir=str(wiki_data_dir), cache_dir=str(tmp_path_factory.mktemp("bert_cache"))
  )
  return config, pretraining.prepare_pretraining_data(config, vocab_size=512)


def test_cached_documents_are_the_sentences_of_each_article(wiki, split_texts):
  _, data = wiki
  tok = data.tokenizer
  docs = data.documents("validation")
  expected = [split_sentences(t) for t in split_texts["validation"]]
  expected = [d for d in expected if d]
  assert docs.num_documents == len(expected)
  assert isinstance(docs.tokens, np.memmap)
  for d, sentences in enumerate(expected):
    first = docs.document_starts[d]
    decoded = [tok.decode(docs.sentences(s, s + 1)) for s in range(first, first + len(sentences))]
    assert decoded == sentences


def test_second_prepare_reuses_the_caches(wiki, monkeypatch):
  config, data = wiki

  def fail(*args, **kwargs):
    raise AssertionError("tokenized again instead of loading the cache")

  monkeypatch.setattr(pretraining, "tokenize_documents", fail)
  monkeypatch.setattr(pretraining.tokenizer_lib.spm.SentencePieceTrainer, "train", fail)
  again = pretraining.prepare_pretraining_data(config, vocab_size=512)
  assert again.tokenizer.sha256 == data.tokenizer.sha256
  np.testing.assert_array_equal(again.documents("train").tokens, data.documents("train").tokens)


def test_masking_rates_on_real_text_are_berts(wiki):
  config, data = wiki
  tok = data.tokenizer
  ds = pretraining.pretraining_dataset(
    data.documents("train"), tok, PretrainingOptions.from_config(config), seed=0, shuffle=True
  )
  selected = candidates = 0
  outcome = {"mask": 0, "kept": 0, "random": 0}
  for i in range(600):
    example = ds[i]
    length = int(example["attention_mask"].sum())
    candidates += length - 3
    weights = example["masked_weights"] > 0
    selected += weights.sum()
    now = example["tokens"][example["masked_positions"][weights]]
    was = example["masked_ids"][weights]
    outcome["mask"] += np.sum(now == tok.mask_id)
    outcome["kept"] += np.sum(now == was)
    outcome["random"] += np.sum((now != was) & (now != tok.mask_id))
    assert np.all(now[now != tok.mask_id] >= 5)  # a random token is never a special one
  assert 0.14 < selected / candidates < 0.16
  assert abs(outcome["mask"] / selected - 0.8) < 0.02
  assert abs(outcome["kept"] / selected - 0.1) < 0.015
  assert abs(outcome["random"] / selected - 0.1) < 0.015


def test_wordpiece_vocab_from_config_and_vocab_size_check(wiki_data_dir, tmp_path):
  config = data_config(
    tfds_data_dir=str(wiki_data_dir),
    cache_dir=str(tmp_path),
    tokenizer="bert-base-uncased",
    train_split="validation",
    eval_split="test",
  )
  with pytest.raises(ValueError, match="set config.model.vocab_size to at least 30522"):
    pretraining.prepare_pretraining_data(config, vocab_size=512)
  data = pretraining.prepare_pretraining_data(config, vocab_size=30522)
  assert data.tokenizer.cls_id == 101
  example = pretraining.eval_batches(data, config, batch_size=2, max_batches=1)[0]
  assert np.all(example["tokens"][:, 0] == 101)


# --- grain pipelines ------------------------------------------------------------------------


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def short_iterator(seed=0, process_index=0, process_count=1, batch_size=8):
  return pretraining.train_iterator(
    SHORT_DATA, SHORT_CONFIG, batch_size, seed, process_index, process_count
  )


def first_sentences(batches):
  """The record of each example: its first A sentence (no truncation in SHORT_DOCS)."""
  examples = [{k: v[i] for k, v in b.items()} for b in batches for i in range(len(b["tokens"]))]
  return [int(unmasked(example)[0][1]) for example in examples]


def test_train_iterator_is_deterministic_and_batched():
  first = take(short_iterator(seed=1), 3)
  for x, y in zip(first, take(short_iterator(seed=1), 3), strict=True):
    assert_same(x, y)
  assert first[0]["tokens"].shape == (8, 64) and first[0]["next_sentence_label"].shape == (8,)
  assert not same(first[0], next(short_iterator(seed=2)))


def test_restoring_the_iterator_state_gives_the_same_next_batches():
  iterator = short_iterator(seed=5)
  num_records = len(pretraining.document_records(SHORT_DOCS, 61))
  take(iterator, num_records // 8 + 1)  # into the second epoch
  state = json.loads(json.dumps(iterator.get_state()))  # survives a JSON round trip
  expected = take(iterator, 4)
  restored = short_iterator(seed=5)
  restored.set_state(state)
  for x, y in zip(take(restored, 4), expected, strict=True):
    assert_same(x, y)


def test_process_shards_are_disjoint_and_cover_every_record():
  records = pretraining.document_records(SHORT_DOCS, 61)
  per_process = len(records) // 2 // 4  # batches of 4 in one epoch
  assert len(records) % 8 == 0, "the check below wants every record in a full batch"
  shards = [
    first_sentences(
      take(short_iterator(process_index=p, process_count=2, batch_size=4), per_process)
    )
    for p in range(2)
  ]
  assert len(set(shards[0])) == len(shards[0]) and len(set(shards[1])) == len(shards[1])
  assert not set(shards[0]) & set(shards[1])
  assert sorted(shards[0] + shards[1]) == sorted(records[:, 1] + FIRST_ID)  # one epoch, all


def test_eval_batches_are_fixed_and_in_record_order():
  batches = pretraining.eval_batches(SHORT_DATA, SHORT_CONFIG, 4, max_batches=3)
  again = pretraining.eval_batches(SHORT_DATA, SHORT_CONFIG, 4, max_batches=3)
  assert len(batches) == 3
  for x, y in zip(batches, again, strict=True):
    assert_same(x, y)
  records = pretraining.document_records(SHORT_DOCS, 61)
  assert first_sentences(batches) == list(records[:12, 1] + FIRST_ID)
  with pytest.raises(ValueError, match="split 'train' makes fewer than batch_size=100000"):
    pretraining.eval_batches(SHORT_DATA, SHORT_CONFIG, 100_000, 1)
