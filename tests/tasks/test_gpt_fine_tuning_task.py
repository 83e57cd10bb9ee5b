"""GPT-1-style fine-tuning through the trainer: the objective against a numpy reference, the
start from a pre-trained LM (its rows kept, three added), each transformation's data on a tiny
dataset, the report against the checkpoint's own predictions, exact resume, and the one-line
errors for inputs that do not fit."""

import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
import tensorflow_datasets as tfds

from configs import gpt_tiny_topics
from tests.conftest import apply_overrides
from tests.tasks.bert_runs import (
  FINE_TUNING,
  KEY,
  Run,
  assert_trees_equal,
  pretrained_params,
  resumed_run,
  run_once,
)
from tests.tasks.text_pair_sets import CHOICES, PAIRS, WORDS
from tfjax.data import gpt_inputs
from tfjax.data.tokenizers import openai_gpt as openai_gpt_tokenizer
from tfjax.data.tokenizers.sentencepiece import SentencePieceTokenizer
from tfjax.hub import openai_gpt
from tfjax.inference import load
from tfjax.models.gpt import GPT, GPTConfig, GPTForFineTuning
from tfjax.tasks import registry
from tfjax.tasks.gpt_fine_tuning import fine_tuning_loss_fn
from tfjax.training import checkpoint

# --- the objective (§3.2, Eq. 5) --------------------------------------------------------------

MODEL = GPTConfig(vocab_size=14, max_len=8, num_layers=1, num_heads=2, d_model=8, d_ff=16)
SPECIAL = gpt_inputs.SpecialTokens.after_vocab(11)


def _batch(num_choices: int, label: np.ndarray) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  rows = []
  for _ in range(len(label)):
    context = list(rng.integers(1, 11, rng.integers(1, 4)))
    answers = [list(rng.integers(1, 11, rng.integers(1, 3))) for _ in range(num_choices)]
    rows.append(
      gpt_inputs.pack(gpt_inputs.multiple_choice_sequences(context, answers, SPECIAL, 8), 8, 0)
    )
  batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
  return {**batch, "label": label, "weights": np.array([1.0, 0.0, 1.0], np.float32)}


def _log_softmax(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return (
    x
    - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True))
    - x.max(-1, keepdims=True)
  )


@pytest.mark.parametrize("lm_coef", [0.5, 0.0])
def test_loss_is_the_choice_cross_entropy_plus_lm_coef_times_the_per_sequence_lm_loss(lm_coef):
  model = GPTForFineTuning(MODEL, combine="choices")
  batch = _batch(3, np.array([2, 0, 1], np.int32))
  params = model.init(KEY, batch["tokens"], batch["extract_positions"])["params"]
  loss, aux = jax.jit(fine_tuning_loss_fn(model, lm_coef, False), static_argnums=3)(
    params, batch, None, True
  )
  scores, lm_logits = model.apply({"params": params}, batch["tokens"], batch["extract_positions"])
  w = batch["weights"]
  nll = -_log_softmax(scores)[np.arange(3), batch["label"]]
  task = (nll * w).sum() / w.sum()
  # Per sequence: the mean next-token loss over its real tokens; per example: over its choices.
  log_p = _log_softmax(lm_logits[..., :-1, :])
  token_nll = -np.take_along_axis(log_p, batch["tokens"][..., 1:, None], -1)[..., 0]
  mask = batch["lm_weights"][..., :-1]
  per_example = ((token_nll * mask).sum(-1) / mask.sum(-1)).mean(-1)
  lm = (per_example * w).sum() / w.sum()
  np.testing.assert_allclose(loss, task + lm_coef * lm, rtol=1e-5)
  np.testing.assert_allclose(aux["task_loss"], task, rtol=1e-5)
  assert float(aux["num_tokens"]) == 2.0
  assert ("lm_loss" in aux) == (lm_coef > 0)


def test_a_float_target_is_a_regression_on_the_squared_error():
  model = GPTForFineTuning(MODEL, num_outputs=1)
  batch = _batch(2, np.array([0.2, 0.9, 0.5], np.float32))
  params = model.init(KEY, batch["tokens"], batch["extract_positions"])["params"]
  loss, aux = fine_tuning_loss_fn(model, 0.0, True)(params, batch, None, True)
  out, _ = model.apply({"params": params}, batch["tokens"], batch["extract_positions"], lm=False)
  w = batch["weights"]
  expected = (((np.asarray(out)[:, 0] - batch["label"]) ** 2) * w).sum() / w.sum()
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(aux["mse"], expected, rtol=1e-5)


# --- runs through the trainer -----------------------------------------------------------------


def gpt_config(gpt_pretrained: Run, **overrides):
  values = {
    **FINE_TUNING,
    "model.dropout_rate": 0.1,  # a resumed run must restore the rng as well as the data
    "data.tfds_data_dir": gpt_pretrained.config.data.tfds_data_dir,
    "init.checkpoint": str(gpt_pretrained.workdir),
  }
  return apply_overrides(gpt_tiny_topics.get_config(), {**values, **overrides})


@pytest.fixture(scope="module")
def topics_run(tmp_path_factory, gpt_pretrained) -> Run:
  workdir = tmp_path_factory.mktemp("gpt_topics") / "workdir"
  return run_once(gpt_config(gpt_pretrained), workdir)


def test_fine_tuning_keeps_every_pretrained_row_and_adds_start_delimiter_extract(gpt_pretrained):
  task = registry.make_task(gpt_config(gpt_pretrained))
  task.prepare_data("/nonexistent-fine-tuning-workdir", 0, 1)
  fresh = jax.jit(task.init_params)(KEY)
  initial = task.initial_params(fresh)
  lm = pretrained_params(gpt_pretrained)
  vocab = lm["token_embed"]["embedding"].shape[0]
  table = initial["gpt"]["token_embed"]["embedding"]
  assert table.shape[0] == vocab + 3
  np.testing.assert_array_equal(table[:vocab], lm["token_embed"]["embedding"])
  assert 0.005 < float(np.std(table[vocab:])) < 0.05  # drawn as the others: N(0, 0.02)
  assert_trees_equal({k: v for k, v in initial["gpt"].items() if k != "token_embed"},
                     {k: v for k, v in lm.items() if k != "token_embed"})  # fmt: skip
  assert_trees_equal(initial["classifier"], fresh["classifier"])
  assert task.special_tokens.start == vocab


def test_a_run_reports_test_accuracy_of_its_checkpoint_and_saves_the_tokenizer(topics_run):
  workdir, config, final = topics_run.workdir, topics_run.config, topics_run.final
  assert final["step"] == 3 and json.loads((workdir / "final_metrics.json").read_text()) == final
  assert {"eval_task_loss", "eval_lm_loss", "eval_accuracy"} <= set(final)
  saved = (workdir / "tokenizer.model").read_bytes()
  pretrained_tokenizer = SentencePieceTokenizer.load(f"{config.init.checkpoint}/tokenizer.model")
  assert saved == pretrained_tokenizer.serialized_model_proto()

  # The reference: the test split encoded again and the final checkpoint's predictions.
  task = registry.make_task(config)
  task.prepare_data(str(workdir), 0, 1)
  test = task._data.test
  labels = np.array(
    [e["label"] for e in tfds.data_source("wiki_topics", split=config.data.test_split,
                                          data_dir=config.data.tfds_data_dir)]
  )  # fmt: skip
  np.testing.assert_array_equal(test.label, labels)
  params = checkpoint.restore_params(str(workdir), jax.eval_shape(task.init_params, KEY))
  logits, _ = task.model().apply({"params": params}, test.tokens, test.extract_positions, lm=False)
  assert final["test_accuracy"] == pytest.approx(np.mean(np.asarray(logits).argmax(-1) == labels))
  majority = np.bincount(task._data.train.label).argmax()
  assert final["test_majority_class_accuracy"] == pytest.approx(np.mean(labels == majority))
  scores = json.loads((workdir / "scores.json").read_text())
  assert scores["test"]["accuracy"] == pytest.approx(final["test_accuracy"])


def test_resumed_run_with_dropout_gives_the_uninterrupted_losses(
  tmp_path, gpt_pretrained, topics_run, caplog
):
  config = lambda **o: gpt_config(gpt_pretrained, **o)
  resumed_run(config, topics_run, tmp_path / "resumed", caplog)


# --- the other transformations, on tiny datasets ----------------------------------------------

CHOICES = {**CHOICES, "data.transformation": "multiple_choice"}


@pytest.mark.parametrize(
  "overrides, metric",
  [
    ({**PAIRS, "data.transformation": "entailment"}, "test_accuracy"),
    ({**PAIRS, "data.transformation": "similarity", "data.label_field": "score"}, "test_pearson"),
    (CHOICES, "test_accuracy"),
    ({**CHOICES, "fine_tuning.lm_coef": 0.0}, "test_accuracy"),
  ],
  ids=["entailment", "similarity_regression", "multiple_choice", "multiple_choice_no_lm"],
)
def test_every_transformation_trains_and_is_scored(tmp_path, gpt_pretrained, overrides, metric):
  config = gpt_config(gpt_pretrained, **{**overrides, "train.num_steps": 2})
  final = registry.train(config, str(tmp_path / "w"))
  assert np.isfinite(final[metric]) and np.isfinite(final["eval_loss"])
  assert ("eval_lm_loss" in final) == (config.fine_tuning.lm_coef > 0)
  scores = json.loads((tmp_path / "w" / "scores.json").read_text())["test"]
  if metric == "test_pearson":
    task = registry.make_task(config)
    task.prepare_data(str(tmp_path / "w"), 0, 1)
    test = task._data.test
    params = checkpoint.restore_params(str(tmp_path / "w"), jax.eval_shape(task.init_params, KEY))
    out, _ = task.model().apply({"params": params}, test.tokens, test.extract_positions, lm=False)
    predictions = np.asarray(out)[:, 0]
    assert scores["pearson"] == pytest.approx(scipy.stats.pearsonr(predictions, test.label)[0])
    assert scores["spearman"] == pytest.approx(scipy.stats.spearmanr(predictions, test.label)[0])
    assert test.tokens.shape[1] == 2  # both orders


# --- bad input: one line each, before training ------------------------------------------------


@pytest.mark.parametrize(
  "overrides, error, message",
  [
    (
      {**PAIRS, "data.transformation": "classification"},
      ValueError,
      r"data.text_pair_field='hypothesis' is set, but data.transformation='classification' "
      r"reads only data.text_field; clear data.text_pair_field or use a transformation that "
      r"reads it \(entailment, similarity\)",
    ),
    (
      {**CHOICES, "data.num_choices": 2},
      ValueError,
      r"example 0 of split 'train' of dataset 'tiny_choices' has 3 answers, more than "
      r"data.num_choices=2; set data.num_choices",
    ),
    (
      {"data.transformation": "retrieval"},
      ValueError,
      r"data.transformation='retrieval' is unknown; choose one of",
    ),
    (
      {"fine_tuning.lm_coef": -1.0},
      ValueError,
      r"fine_tuning.lm_coef=-1.0 must be >= 0",
    ),
    (
      {**PAIRS, "data.transformation": "entailment", "data.max_seq_len": 4},
      ValueError,
      r"data.max_seq_len=4 leaves no room for text beside the added tokens of 'entailment'; "
      r"raise data.max_seq_len to at least 5",
    ),
  ],
  ids=["pair_for_one_text", "too_many_choices", "unknown", "negative_lm_coef", "max_seq_len"],
)
def test_inputs_that_do_not_fit_are_one_line_errors(
  tmp_path, gpt_pretrained, overrides, error, message
):
  config = gpt_config(
    gpt_pretrained, **{**overrides, "train.num_steps": 2, "train.checkpoint_every": 2}
  )
  with pytest.raises(error, match=message) as caught:
    registry.train(config, str(tmp_path / "w"))
  assert "\n" not in str(caught.value)
  assert not (tmp_path / "w" / "checkpoints").exists()


def test_a_float_label_makes_any_pair_transformation_a_regression(tmp_path, gpt_pretrained):
  overrides = {**PAIRS, "data.transformation": "entailment", "data.label_field": "score"}
  config = gpt_config(gpt_pretrained, **overrides, **{"train.num_steps": 2})
  final = registry.train(config, str(tmp_path / "w"))
  assert {"test_pearson", "test_spearman", "test_mse", "eval_mse"} <= set(final)
  assert "test_accuracy" not in final


def test_an_empty_side_names_the_example(gpt_pretrained):
  tokens = gpt_inputs.SpecialTokens.after_vocab(512)
  tokenizer = SentencePieceTokenizer.load(f"{gpt_pretrained.workdir}/tokenizer.model")
  from tfjax.data.gpt_fine_tuning import encode_examples

  with pytest.raises(ValueError, match=r"^example 1 of the examples: the second text is empty"):
    encode_examples(tokenizer, tokens, "entailment", ["a river", "the city"], np.array([0, 1]),
                    max_seq_len=16, second=["stone", ""])  # fmt: skip


def test_another_tokenizer_than_the_checkpoint_s_is_a_clear_error(tmp_path, gpt_pretrained):
  from tfjax.data.tokenizers import sentencepiece

  texts = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] * 20
  other = sentencepiece.train_or_load_tokenizer(
    texts, vocab_size=300, cache_dir=tmp_path, name="other"
  ).save(tmp_path)  # another vocabulary
  config = gpt_config(gpt_pretrained, **{"data.tokenizer": str(other)})
  with pytest.raises(ValueError, match=r"data.tokenizer='.*tokenizer.model' is not the tokenizer "
                     r"init.checkpoint='.*' was pre-trained with"):  # fmt: skip
    registry.train(config, str(tmp_path / "w"))


def test_a_bert_workdir_as_init_checkpoint_is_a_clear_error(tmp_path, gpt_pretrained):
  bert = tmp_path / "bert"
  bert.mkdir()
  (bert / "config.json").write_text(json.dumps({"task": "bert_pretraining", "model": {}}))
  config = gpt_config(gpt_pretrained, **{"init.checkpoint": str(bert)})
  with pytest.raises(ValueError, match=r"init.checkpoint: .* task 'bert_pretraining', not a GPT"):
    registry.train(config, str(tmp_path / "w"))


def test_fine_tuning_an_hf_gpt1_keeps_its_bpe_tokenizer_and_resumes(tmp_path, gpt_pretrained):
  """An HF OpenAI GPT directory (written by our export, with the GPT-1 tokenizer golden's
  vocab.json + merges.txt): the run saves that tokenizer beside its checkpoints and a resumed
  run reads it back."""
  golden = pathlib.Path(__file__).resolve().parents[1] / "golden"
  hf_config = json.loads((golden / "openai_gpt_tiny" / "config.json").read_text())
  config = openai_gpt.openai_gpt_config_from_hf({**hf_config, "vocab_size": 300})
  params = GPT(config).init(KEY, jnp.zeros((1, 4), jnp.int32))["params"]
  hf_dir = tmp_path / "hf_gpt1"
  openai_gpt.save_openai_gpt(hf_dir, config, params)
  for name in ("vocab.json", "merges.txt"):
    shutil.copy(golden / "openai_gpt_tokenizer" / name, hf_dir / name)
  original = openai_gpt_tokenizer.openai_gpt_tokenizer_from_dir(hf_dir)
  overrides = {**PAIRS, "data.transformation": "entailment", "init.checkpoint": str(hf_dir),
               "data.max_seq_len": config.max_len}  # fmt: skip
  workdir = tmp_path / "w"
  registry.train(gpt_config(gpt_pretrained, **overrides, **{"train.num_steps": 2}), str(workdir))
  saved = json.loads((workdir / "tokenizer_config.json").read_text())
  assert saved == {"tokenizer_class": "OpenAIGPTTokenizer"}
  (hf_dir / "vocab.json").unlink()  # the resumed run must read its own copy
  final = registry.train(gpt_config(gpt_pretrained, **overrides), str(workdir))
  assert final["step"] == 3 and np.isfinite(final["test_accuracy"])
  text = "the river city, of water!"
  assert load.saved_tokenizer(workdir).encode(text) == original.encode(text)
