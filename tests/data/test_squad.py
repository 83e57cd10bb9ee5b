"""Tests of SQuAD inputs: windows and their stride, answer labels, character offsets back to the
text (WordPiece and SentencePiece), best answers over windows, TFDS reading."""

import unicodedata

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests.tiny_datasets import tiny_builder
from tfjax.data import squad
from tfjax.data.tokenizers import sentencepiece as tokenizer_lib
from tfjax.data.tokenizers.bert import (
  SentencePieceBertTokenizer,
  WordPieceTokenizer,
  load_bert_tokenizer,
)

NAMES = ("Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Henry")
CITIES = ("Paris", "Rome", "Berlin", "Madrid", "Vienna", "Prague", "Lisbon", "Dublin")
FILLER = "The weather is nice today and the streets are busy."


def fact_example(i: int, filler: int = 0) -> squad.SquadExample:
  """The question "Where does <name> live?" on facts (after `filler` filler sentences)."""
  facts = [f"{NAMES[j]} lives in {CITIES[j]}." for j in range(len(NAMES))]
  context = " ".join([FILLER] * filler + facts)
  answer = CITIES[i]
  start = context.index(f"in {answer}.") + 3
  return squad.SquadExample(f"q{i}", f"Where does {NAMES[i]} live?", context, (answer,), (start,))


@pytest.fixture(scope="module")
def wordpiece() -> WordPieceTokenizer:
  return load_bert_tokenizer("bert-base-uncased")


@pytest.fixture(scope="module")
def sentencepiece(tmp_path_factory) -> SentencePieceBertTokenizer:
  texts = [fact_example(i, filler=1).context for i in range(8)] * 20 + ["Zoë ate crêpes."]
  sp = tokenizer_lib.train_or_load_tokenizer(
    iter(texts),
    vocab_size=320,
    cache_dir=tmp_path_factory.mktemp("sp"),
    name="squad_test",
    special_tokens="bert",
  )
  return SentencePieceBertTokenizer(sp)


def encode(tokenizer, examples, max_seq_len=32, doc_stride=8, max_query_length=10):
  return squad.encode_examples(
    tokenizer,
    examples,
    max_seq_len=max_seq_len,
    doc_stride=doc_stride,
    max_query_length=max_query_length,
  )


# --- character offsets -----------------------------------------------------------------------


def _strip_accents_lower(text: str) -> str:
  text = unicodedata.normalize("NFD", text.lower())
  return "".join(c for c in text if unicodedata.category(c) != "Mn")


TEXTS = ["  Zoë  ate 12 crêpes\tin Paris's café.  ", "Where does Bob live?", ""]


def test_wordpiece_offsets_cover_each_tokens_text(wordpiece):
  for text, (ids, spans) in zip(TEXTS, squad.encode_with_offsets(wordpiece, TEXTS), strict=True):
    assert ids == wordpiece.encode(text) and spans.shape == (len(ids), 2)
    for token_id, (a, b) in zip(ids, spans, strict=True):
      assert wordpiece.id_to_token(token_id).removeprefix("##") == _strip_accents_lower(text[a:b])


def test_sentencepiece_offsets_cover_each_pieces_text(sentencepiece):
  encoded = squad.encode_with_offsets(sentencepiece, TEXTS)
  for text, (ids, spans) in zip(TEXTS, encoded, strict=True):
    assert ids == sentencepiece.encode(text)
    pending = b""  # byte-fallback pieces: the last one of a character covers it
    for token_id, (a, b) in zip(ids, spans, strict=True):
      piece = sentencepiece.id_to_token(token_id)
      if piece.startswith("<0x"):
        pending += bytes([int(piece[3:5], 16)])
        try:
          char = pending.decode("utf-8")
        except UnicodeDecodeError:  # not the character's last byte yet: no text of its own
          assert a == b
          continue
        assert char.lstrip() == text[a:b]  # whitespace (a tab) gets an empty span
        pending = b""
        continue
      assert piece.replace("▁", "") == text[a:b]  # leading whitespace left out
      assert not text[a:b][:1].isspace()
    assert pending == b""


# --- windows ----------------------------------------------------------------------------------


def test_window_starts_follow_googles_loop():
  assert squad.window_starts(10, 4, 3) == [(0, 4), (3, 4), (6, 4)]
  assert squad.window_starts(10, 4, 2) == [(0, 4), (2, 4), (4, 4), (6, 4)]
  assert squad.window_starts(10, 4, 6) == [(0, 4), (4, 4), (8, 2)]  # stride > window: no gap
  assert squad.window_starts(3, 4, 2) == [(0, 3)]
  assert squad.window_starts(0, 4, 2) == [(0, 0)]


def test_windows_cover_the_context_with_the_stride(wordpiece):
  example = fact_example(7, filler=2)
  features = encode(wordpiece, [example], max_seq_len=24, doc_stride=5)
  doc_ids = wordpiece.encode(example.context)
  question = wordpiece.encode(example.question)
  window = 24 - len(question) - 3
  assert len(features) > 3 and set(features.example_index) == {0}
  np.testing.assert_array_equal(np.diff(features.doc_start), 5)
  covered = np.zeros(len(doc_ids), bool)
  for w in range(len(features)):
    first, count, start = (
      int(x[w]) for x in (features.context_offset, features.context_length, features.doc_start)
    )
    assert first == len(question) + 2 and count == min(window, len(doc_ids) - start)
    row = features.tokens[w]
    cls, sep = wordpiece.cls_id, wordpiece.sep_id
    np.testing.assert_array_equal(row[:first], [cls, *question, sep])
    np.testing.assert_array_equal(row[first : first + count], doc_ids[start : start + count])
    assert row[first + count] == sep and (row[first + count + 1 :] == wordpiece.pad_id).all()
    covered[start : start + count] = True
  assert covered.all() and features.doc_start[-1] + features.context_length[-1] == len(doc_ids)


def test_rows_have_segments_from_the_context_on_and_mask_the_padding(wordpiece):
  features = encode(wordpiece, [fact_example(0)], max_seq_len=40)
  batch = features.rows(np.array([0]))
  first, length = int(features.context_offset[0]), int(features.lengths[0])
  expected_segments = [0] * first + [1] * (length - first) + [0] * (40 - length)
  np.testing.assert_array_equal(batch["segment_ids"][0], expected_segments)
  np.testing.assert_array_equal(batch["attention_mask"][0], [1] * length + [0] * (40 - length))
  assert set(batch) == set(squad.FEATURES) and batch["weights"].tolist() == [1.0]
  assert features.rows(0)["tokens"].shape == (40,)


def test_question_is_cut_to_max_query_length(wordpiece):
  long_question = squad.SquadExample("q", "why " * 20, "Paris.", ("Paris",), (0,))
  features = encode(wordpiece, [long_question], max_query_length=5)
  assert features.context_offset[0] == 5 + 2


# --- answer labels and offsets ----------------------------------------------------------------


@pytest.mark.parametrize("tokenizer_name", ["wordpiece", "sentencepiece"])
def test_gold_span_tokens_are_the_answer(tokenizer_name, request):
  tokenizer = request.getfixturevalue(tokenizer_name)
  examples = [fact_example(i, filler=1) for i in range(8)]
  features = encode(tokenizer, examples, max_seq_len=32, doc_stride=8)
  labelled = np.flatnonzero(features.start_position > 0)
  assert set(features.example_index[labelled]) == set(range(8))  # each answer in some window
  for w in labelled:
    s, e = int(features.start_position[w]), int(features.end_position[w])
    answer = examples[features.example_index[w]].answers[0]
    assert features.answer_text(w, s, e) == answer  # the exact text, case kept
    decoded = tokenizer.decode(features.tokens[w, s : e + 1])
    assert decoded.strip() == (answer.lower() if tokenizer_name == "wordpiece" else answer)
  assert features.num_answer_outside == len(features) - len(labelled) > 0


def test_answer_outside_a_window_is_labelled_cls(wordpiece):
  example = fact_example(7, filler=3)  # the answer is the context's last word but one
  features = encode(wordpiece, [example], max_seq_len=24, doc_stride=5)
  ends = features.doc_start + features.context_length
  answer_token = len(wordpiece.encode(example.context)) - 2
  inside = (features.doc_start <= answer_token) & (answer_token < ends)
  assert not inside.all() and inside.any()
  np.testing.assert_array_equal(features.start_position[~inside], 0)
  np.testing.assert_array_equal(features.end_position[~inside], 0)
  assert (features.start_position[inside] > 0).all()


def test_a_question_without_answer_is_labelled_cls(wordpiece):
  unanswerable = squad.SquadExample("q", "Who?", "Nobody is here.", (), ())
  features = encode(wordpiece, [unanswerable])
  assert features.start_position.tolist() == features.end_position.tolist() == [0]


def test_char_spans_map_context_rows_back_exactly(wordpiece):
  example = squad.SquadExample("q", "What?", "Zoë's  café, in Paris!", ("café",), (7,))
  features = encode(wordpiece, [example])
  spans = features.char_spans(0)
  first, count = int(features.context_offset[0]), int(features.context_length[0])
  assert (spans[:first] == -1).all() and (spans[first + count :] == -1).all()
  texts = [example.context[a:b] for a, b in spans[first : first + count]]
  assert texts == ["Zoë", "'", "s", "café", ",", "in", "Paris", "!"]
  s, e = int(features.start_position[0]), int(features.end_position[0])
  assert (s, e) == (first + 3, first + 3) and features.answer_text(0, s, e) == "café"
  with pytest.raises(ValueError, match="not a span of its context tokens"):
    features.answer_text(0, 0, s)


def test_each_context_token_may_start_an_answer_in_one_window_only(wordpiece):
  examples = [fact_example(7, filler=2), fact_example(1)]
  features = encode(wordpiece, examples, max_seq_len=24, doc_stride=4)
  starts, ends = features.span_masks(np.arange(len(features)))
  for example in range(2):
    counts = np.zeros(len(features.context_offsets[example]), int)
    for w in np.flatnonzero(features.example_index == example):
      rows = np.flatnonzero(starts[w])
      counts[features.doc_start[w] + rows - features.context_offset[w]] += 1
      assert ends[w].sum() == features.context_length[w] and not (starts[w] & ~ends[w]).any()
    np.testing.assert_array_equal(counts, 1)
  # A middle window gives its middle token the most context: Google's rule.
  w = 1
  middle = features.context_offset[w] + features.context_length[w] // 2
  assert starts[w, middle]


# --- best answers over windows -----------------------------------------------------------------


def test_best_answers_take_each_examples_best_window(wordpiece):
  examples = [fact_example(2, filler=2), fact_example(0)]
  features = encode(wordpiece, examples, max_seq_len=24, doc_stride=5)
  n = len(features)
  scores, starts, ends = np.zeros(n), np.zeros(n, int), np.zeros(n, int)
  for w in range(n):  # each window proposes its first context token
    starts[w] = ends[w] = features.context_offset[w]
  best = {0: int(np.flatnonzero(features.example_index == 0)[-1])}
  best[1] = int(np.flatnonzero(features.example_index == 1)[0])
  scores[list(best.values())] = 5.0
  answers = squad.best_answers(features, scores, starts, ends)
  expected = {examples[e].id: features.answer_text(w, starts[w], ends[w]) for e, w in best.items()}
  assert answers == expected
  # SQuAD 2.0: a null score above the best span's answers "".
  null = np.where(features.example_index == 0, 6.0, -10.0)
  with_null = squad.best_answers(features, scores, starts, ends, null_scores=null)
  assert with_null == {examples[0].id: "", examples[1].id: answers[examples[1].id]}


def test_an_example_with_no_allowed_span_answers_empty(wordpiece):
  features = encode(wordpiece, [squad.SquadExample("q0", "Who?", "", (), ())])
  assert len(features) == 1 and features.context_length.tolist() == [0]
  answers = squad.best_answers(features, np.array([-np.inf]), np.zeros(1, int), np.zeros(1, int))
  assert answers == {"q0": ""}


# --- TFDS --------------------------------------------------------------------------------------


def _squad_examples(golds):
  for i in range(6):
    e = fact_example(i, filler=1)
    answers = {"text": [e.answers[0]] * golds, "answer_start": [e.answer_starts[0]] * golds}
    texts = {"id": e.id, "title": "t", "context": e.context, "question": e.question}
    yield {**texts, "answers": answers}


# SQuAD's features on a few fact questions; `validation` lists two golds per question.
tiny_builder(
  "tiny_squad",
  {
    "id": tfds.features.Text(),
    "title": tfds.features.Text(),
    "context": tfds.features.Text(),
    "question": tfds.features.Text(),
    "answers": tfds.features.Sequence({"text": tfds.features.Text(), "answer_start": np.int32}),
  },
  {"train": lambda: list(_squad_examples(1)), "validation": lambda: list(_squad_examples(2))},
)


def data_config(data_dir, **overrides) -> ml_collections.ConfigDict:
  config = dict(
    name="tiny_squad",
    tfds_data_dir=data_dir,
    id_field="id",
    question_field="question",
    context_field="context",
    answers_field="answers",
    train_split="train",
    eval_split="validation",
    max_seq_len=32,
    doc_stride=8,
    max_query_length=10,
  )
  return ml_collections.ConfigDict({**config, **overrides})


def test_prepare_reads_squad_features_from_tfds(tmp_path, wordpiece):
  data = squad.prepare_squad_data(data_config(str(tmp_path)), wordpiece)
  assert sorted(e.id for e in data.train.examples) == [f"q{i}" for i in range(6)]
  for example in data.eval.examples:
    reference = fact_example(int(example.id[1:]), filler=1)
    assert example.context == reference.context and example.question == reference.question
    assert example.answers == reference.answers * 2
    assert example.answer_starts == reference.answer_starts * 2
  assert len(data.train) == len(data.eval) > 6  # several windows per question
  with pytest.raises(ValueError, match=r"no feature 'query'.*config.data.question_field"):
    squad.prepare_squad_data(data_config(str(tmp_path), question_field="query"), wordpiece)
  with pytest.raises(ValueError, match="no split 'test'"):
    squad.prepare_squad_data(data_config(str(tmp_path), eval_split="test"), wordpiece)


def test_encode_errors_say_how_to_fix(wordpiece):
  with pytest.raises(ValueError, match="use max_query_length <= 28"):
    encode(wordpiece, [fact_example(0)], max_query_length=30)
  with pytest.raises(ValueError, match="doc_stride=0 must be >= 1"):
    encode(wordpiece, [fact_example(0)], doc_stride=0)
  with pytest.raises(TypeError, match="gives no character offsets"):
    squad.encode_with_offsets(object(), ["x"])
