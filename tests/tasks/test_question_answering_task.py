"""Question answering on the shared trainer: the loss against a numpy reference, the span search
against brute force, SQuAD's EM and F1 against hand counts, and a tiny BERT that learns a few
synthetic SQuAD questions end to end."""

import itertools
import json
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import bert_tiny_squad
from tests.conftest import apply_overrides
from tests.tiny_datasets import tiny_builder
from tfjax.data import squad
from tfjax.data.tokenizers.bert import find_offline_bert_vocab
from tfjax.models.bert import BertConfig, BertForQuestionAnswering
from tfjax.tasks import question_answering, registry
from tfjax.tasks.question_answering import evaluate_predictions, normalize_answer, squad_em_f1
from tfjax.training import metrics

NAMES = ("Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Henry")
CITIES = ("Paris", "Rome", "Berlin", "Madrid", "Vienna", "Prague", "Lisbon", "Dublin")
FILLER = "The weather is nice today and the streets are busy."


def _qa_examples():
  """8 "Where does <name> live?" questions on contexts longer than a window."""
  for i, (name, city) in enumerate(zip(NAMES, CITIES, strict=True)):
    others = [f"{n} works in {c}." for n, c in zip(NAMES, CITIES, strict=True) if n != name]
    facts = [FILLER, *others[i % 3 :: 3], f"{name} lives in {city}.", FILLER]
    context = " ".join(facts[i % 2 :])
    answer = {"text": [city], "answer_start": [context.index(f"in {city}.") + 3]}
    example = {"id": f"q{i}", "title": "t", "context": context, "answers": answer}
    yield {**example, "question": f"Where does {name} live?"}


# SQuAD's features on those questions.
tiny_builder(
  "tiny_qa",
  {
    "id": tfds.features.Text(),
    "title": tfds.features.Text(),
    "context": tfds.features.Text(),
    "question": tfds.features.Text(),
    "answers": tfds.features.Sequence({"text": tfds.features.Text(), "answer_start": np.int32}),
  },
  {"train": lambda: list(_qa_examples())},
)


# bert_tiny_squad.py from scratch at toy sizes on tiny_qa; WordPiece (bert-base-uncased vocab).
TINY: dict[str, Any] = {
  "init.checkpoint": "",
  "init.load_weights": False,
  "model.vocab_size": 30522,
  "model.num_layers": 1,
  "model.d_model": 32,
  "model.num_heads": 2,
  "model.d_ff": 64,
  "model.max_len": 32,
  "model.dropout_rate": 0.0,
  "model.attention_dropout_rate": 0.0,
  "data.name": "tiny_qa",
  "data.train_split": "train",
  "data.eval_split": "train",
  "data.max_seq_len": 32,
  "data.doc_stride": 8,
  "data.max_query_length": 10,
  "train.batch_size": 8,
  "train.num_steps": 150,
  "train.learning_rate": 1e-2,
  "train.warmup_steps": 10,
  "train.log_every": 50,
  "train.eval_every": 1000,
  "train.checkpoint_every": 150,
}


def tiny_config(data_dir: str, **overrides: Any) -> ml_collections.ConfigDict:
  values = {
    **TINY,
    "data.tfds_data_dir": data_dir,
    "data.tokenizer": str(find_offline_bert_vocab()),
  }
  return apply_overrides(bert_tiny_squad.get_config(), {**values, **overrides})


# --- loss and span search ----------------------------------------------------------------------


def _log_softmax(x: np.ndarray) -> np.ndarray:
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_loss_is_the_mean_of_start_and_end_cross_entropies_over_weighted_rows():
  config = BertConfig(vocab_size=50, max_len=8, num_layers=1, num_heads=2, d_model=16, d_ff=32)
  model = BertForQuestionAnswering(config)
  rng = np.random.default_rng(0)
  batch = {
    "tokens": rng.integers(5, 50, (3, 8)).astype(np.int32),
    "segment_ids": np.zeros((3, 8), np.int32),
    "attention_mask": np.ones((3, 8), np.int32),
    "start_position": np.array([1, 0, 4], np.int32),
    "end_position": np.array([2, 0, 7], np.int32),
    "weights": np.array([1, 1, 0], np.float32),
  }
  params = model.init(jax.random.key(0), batch["tokens"])["params"]
  loss, aux = question_answering.question_answering_loss_fn(model)(params, batch, None, True)
  start, end = (np.asarray(x) for x in model.apply({"params": params}, batch["tokens"]))
  rows = np.arange(2)  # the weighted ones
  start_ce = -_log_softmax(start)[rows, batch["start_position"][:2]]
  end_ce = -_log_softmax(end)[rows, batch["end_position"][:2]]
  np.testing.assert_allclose(loss, (start_ce.mean() + end_ce.mean()) / 2, rtol=1e-5)
  assert float(aux["num_tokens"]) == 2.0
  start_right = start[:2].argmax(-1) == batch["start_position"][:2]
  end_right = end[:2].argmax(-1) == batch["end_position"][:2]
  np.testing.assert_allclose(aux["start_accuracy"], start_right.mean())
  np.testing.assert_allclose(aux["span_accuracy"], (start_right & end_right).mean())


def test_best_spans_match_a_brute_force_search():
  rng = np.random.default_rng(1)
  b, t, max_len = 4, 9, 3
  start_logits, end_logits = rng.normal(size=(2, b, t)).astype(np.float32)
  start_mask, end_mask = rng.random((2, b, t)) < 0.6
  start_mask[3] = False  # no allowed span in row 3
  scores, starts, ends = (
    np.asarray(x)
    for x in question_answering.best_spans(
      jnp.asarray(start_logits), jnp.asarray(end_logits), start_mask, end_mask, max_len
    )
  )
  for row in range(b):
    candidates = [
      (start_logits[row, s] + end_logits[row, e], s, e)
      for s, e in itertools.product(range(t), range(t))
      if start_mask[row, s] and end_mask[row, e] and 0 <= e - s < max_len
    ]
    if not candidates:
      assert scores[row] == -np.inf
      continue
    score, s, e = max(candidates)
    assert (starts[row], ends[row]) == (s, e)
    np.testing.assert_allclose(scores[row], score, rtol=1e-6)


# --- EM / F1 (official evaluate-v1.1.py) -----------------------------------------------------


def test_normalize_answer_follows_the_official_script():
  assert normalize_answer("The  Quick, brown fox!") == "quick brown fox"
  assert normalize_answer("An apple a day") == "apple day"
  assert normalize_answer("theatre of the U.S.") == "theatre of us"  # \b: not "atre"
  assert normalize_answer("  ") == ""


def test_em_and_f1_hand_computed():
  # Exact after normalisation; the best gold counts.
  assert squad_em_f1("the Eiffel Tower", ["Eiffel tower!", "tower"]) == (1.0, 1.0)
  # pred {cat, sat}, gold {cat, sat, on, mat}: P = 1, R = 1/2, F1 = 2/3.
  em, f1 = squad_em_f1("the cat sat", ["a cat sat on the mat"])
  assert em == 0.0 and f1 == pytest.approx(2 / 3)
  # Counts clip: pred x x y vs gold x y y share {x, y}: P = R = 2/3.
  assert squad_em_f1("x x y", ["x y y"])[1] == pytest.approx(2 / 3)
  # Max over golds: F1 with "1990" alone is 2 * (1/2 * 1) / (3/2) = 2/3, with "in 1990" 1.
  assert squad_em_f1("in 1990", ["1990"])[1] == pytest.approx(2 / 3)
  assert squad_em_f1("in 1990", ["1990", "in 1990"]) == (1.0, 1.0)
  assert squad_em_f1("Paris", ["Rome"]) == (0.0, 0.0)
  assert squad_em_f1("", ["Rome"]) == (0.0, 0.0)
  # SQuAD 2.0 unanswerable (no golds): only an empty answer scores.
  assert squad_em_f1("", []) == (1.0, 1.0) and squad_em_f1("x", []) == (0.0, 0.0)


def test_evaluate_predictions_averages_in_percent():
  examples = [
    squad.SquadExample("a", "", "", ("cat sat",), (0,)),
    squad.SquadExample("b", "", "", ("Rome",), (0,)),
  ]
  scores = evaluate_predictions(examples, {"a": "the cat", "b": "Rome"})
  # a: EM 0, F1 2 * (1 * 1/2) / (3/2) = 2/3; b: 1, 1.
  assert scores["exact_match"] == pytest.approx(50.0)
  assert scores["f1"] == pytest.approx(100 * (2 / 3 + 1) / 2)


# --- end to end --------------------------------------------------------------------------------


def test_a_tiny_bert_learns_a_few_questions_end_to_end(tmp_path):
  data_dir, workdir = str(tmp_path / "tfds"), tmp_path / "workdir"
  config = tiny_config(data_dir)
  final = registry.train(config, str(workdir))
  assert 0 <= final["eval_exact_match"] <= 100 and 0 <= final["eval_f1"] <= 100
  predictions = json.loads((workdir / "predictions.json").read_text())
  assert sorted(predictions) == [f"q{i}" for i in range(8)]
  # Every context is longer than a window: the answers come from the right window.
  assert final["eval_f1"] > 90, predictions
  assert predictions["q1"] == "Rome"
  train = [r["loss"] for r in metrics.read_metrics(str(workdir)) if r["split"] == "train"]
  assert train[-1] < train[0] / 4
  assert json.loads((workdir / "config.json").read_text())["task"] == "question_answering"
  assert (workdir / "vocab.txt").is_file()


def test_config_errors_say_how_to_fix(tmp_path):
  with pytest.raises(ValueError, match="needs a tokenizer"):
    registry.make_task(tiny_config(str(tmp_path), **{"data.tokenizer": ""}))
  with pytest.raises(ValueError, match="max_answer_length=0 must be >= 1"):
    registry.make_task(tiny_config(str(tmp_path), **{"data.max_answer_length": 0}))
  too_long = tiny_config(str(tmp_path), **{"data.max_seq_len": 64})
  with pytest.raises(ValueError, match=r"max_seq_len=64 is longer than the position table"):
    registry.train(too_long, str(tmp_path / "workdir"))


def test_fine_tunes_from_an_hf_bert_directory(tmp_path):
  """all-MiniLM-L6-v2 (an HF BertModel with its vocab.txt, installed offline): its architecture,
  tokenizer and encoder weights are taken; a fresh span head on top."""
  hf_dir = str(find_offline_bert_vocab().parent)
  overrides = {"init.checkpoint": hf_dir, "init.load_weights": True, "data.tokenizer": ""}
  one_step = {f"train.{k}": 1 for k in ("num_steps", "log_every", "checkpoint_every")}
  config = tiny_config(str(tmp_path / "tfds"), **overrides, **one_step, **{"train.warmup_steps": 0})
  final = registry.train(config, str(tmp_path / "workdir"))
  saved = json.loads((tmp_path / "workdir" / "config.json").read_text())
  assert saved["model"]["d_model"] == 384 and saved["model"]["num_layers"] == 6
  assert 0 <= final["eval_f1"] <= 100
