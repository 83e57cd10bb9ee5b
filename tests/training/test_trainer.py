"""train_and_evaluate end to end on the tiny config: resume after a real kill, outputs, rotation,
and clear errors that leave a workdir as it was."""

import hashlib
import json
import logging
import pathlib
import shutil
import signal
import subprocess
import time

import matplotlib.image
import ml_collections
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tfjax.tasks.lm import LanguageModelTask
from tfjax.training import metrics, plots, trainer


@pytest.fixture(autouse=True)
def fixed_peak_flops(monkeypatch):
  """In-process runs skip the ~2 s matmul benchmark behind MFU (only a logged figure)."""
  monkeypatch.setattr(metrics, "measure_matmul_peak_flops", lambda *a, **k: 1e11)


def train_losses(workdir) -> dict[int, float]:
  records = [r for r in metrics.read_metrics(str(workdir)) if r["split"] == "train"]
  steps = [r["step"] for r in records]
  assert len(steps) == len(set(steps)), f"duplicate train steps in {workdir}: {steps}"
  return {r["step"]: r["loss"] for r in records}


def checkpoint_steps(workdir) -> list[int]:
  """Finalized checkpoints (orbax writes `<step>.orbax-checkpoint-tmp-*`, then renames)."""
  root = pathlib.Path(workdir) / "checkpoints"
  return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.exists() else []


def tree_digest(root) -> dict[str, str]:
  """sha256 of every file under `root`, by relative path."""
  root = pathlib.Path(root)
  return {
    str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
    for p in sorted(root.rglob("*"))
    if p.is_file()
  }


def test_a_workdir_written_before_configs_named_their_task_is_a_language_model_run(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"model": {}, "train": {}}))  # no "task"
  trainer.check_same_task(str(tmp_path), ml_collections.ConfigDict({"task": "lm"}))
  with pytest.raises(ValueError, match="holds a run of task 'lm', not 'translation'"):
    trainer.check_same_task(str(tmp_path), ml_collections.ConfigDict({"task": "translation"}))


def test_a_run_identity_key_added_since_a_workdir_was_written_matches_only_when_unset(
  tmp_path, tiny_config
):
  """A config.json written before `data.extra` existed resumes while the key is unset ("", 0),
  not once it is set."""
  task = LanguageModelTask(tiny_config)
  task.run_identity = (*task.run_identity, "data.extra")
  saved = json.loads(tiny_config.to_json_best_effort())
  (tmp_path / "config.json").write_text(json.dumps(saved))  # no data.extra
  for unset, value in (("", "x"), (0, 3)):
    config = ml_collections.ConfigDict(tiny_config.to_dict())
    config.data.extra = unset
    trainer.check_same_run(str(tmp_path), config, task)
    config.data.extra = value
    with pytest.raises(ValueError, match=rf"data.extra: checkpoint None, config {value!r}"):
      trainer.check_same_run(str(tmp_path), config, task)


# --- resume -----------------------------------------------------------------------------------


def test_resume_after_kill_gives_the_same_losses(
  tmp_path, trained_run, train_command, cli_env, run_cli
):
  workdir = tmp_path / "killed"
  argv = train_command(workdir, trained_run.overrides)
  num_steps = trained_run.overrides["train.num_steps"]
  process = subprocess.Popen(
    argv,
    cwd=pathlib.Path(__file__).resolve().parents[2],
    env=cli_env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  try:
    deadline = time.monotonic() + 120
    while not checkpoint_steps(workdir):  # the step-4 checkpoint is finalized
      assert process.poll() is None, "the run ended before its first checkpoint"
      assert time.monotonic() < deadline, "no checkpoint after 120 s"
      time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
  finally:
    process.kill()
    process.wait()
  resumed_from = max(checkpoint_steps(workdir))
  assert resumed_from < num_steps and not (workdir / "final_metrics.json").exists()
  logged_before_kill = max(train_losses(workdir))

  done = run_cli(argv)
  assert done.returncode == 0, done.stderr[-3000:]

  expected = train_losses(trained_run.workdir)
  resumed = train_losses(workdir)  # asserts one train line per step
  assert sorted(resumed) == list(range(1, num_steps + 1))
  after = range(resumed_from + 1, num_steps + 1)
  rel = [abs(resumed[s] - expected[s]) / abs(expected[s]) for s in after]
  print(
    f"killed after logging step {logged_before_kill}, resumed from checkpoint {resumed_from}; "
    f"max relative loss difference over steps {after.start}-{num_steps}: {max(rel):.3g}"
  )
  np.testing.assert_allclose(
    [resumed[s] for s in after], [expected[s] for s in after], rtol=1e-6, atol=0
  )
  # Steps up to the checkpoint were logged by the killed run, and match as well.
  np.testing.assert_allclose(
    [resumed[s] for s in range(1, num_steps + 1)],
    [expected[s] for s in range(1, num_steps + 1)],
    rtol=1e-6,
    atol=0,
  )


# --- a whole run in process -----------------------------------------------------------------


def test_a_run_learns_and_writes_its_report(tmp_path, tiny_config):
  config = tiny_config
  config.train.update(batch_size=16, num_steps=300, learning_rate=1e-2, log_every=10)
  config.train.update(eval_every=100, checkpoint_every=300)
  workdir = tmp_path / "run"
  final = trainer.train_and_evaluate(config, str(workdir), LanguageModelTask)

  records = metrics.read_metrics(str(workdir))
  losses = [r["loss"] for r in records if r["split"] == "train"]
  assert [r["step"] for r in records if r["split"] == "eval"] == [100, 200, 300]
  assert len(losses) == 30 and np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5

  assert json.loads((workdir / "final_metrics.json").read_text()) == final
  assert final["step"] == 300
  assert final["eval_perplexity"] == pytest.approx(np.exp(final["eval_loss"]))
  assert final["eval_perplexity"] < final["unigram_perplexity"]

  # loss.png is the plot of this run's metrics (what a plot shows: test_plots.py).
  replot = tmp_path / "replot.png"
  plots.plot_loss_curves(records, str(replot))
  np.testing.assert_array_equal(
    matplotlib.image.imread(str(workdir / "loss.png")), matplotlib.image.imread(str(replot))
  )

  samples = (workdir / "samples.txt").read_text()
  for prompt in config.sample.prompts:
    assert prompt in samples

  eval_losses = [r["loss"] for r in records if r["split"] == "eval"]
  for split, expected in (("train", losses), ("eval", eval_losses)):
    events = EventAccumulator(str(workdir / "tensorboard" / split))
    events.Reload()
    np.testing.assert_allclose([e.value for e in events.Scalars("loss")], expected, rtol=1e-6)

  saved = json.loads((workdir / "config.json").read_text())
  assert saved == json.loads(config.to_json_best_effort())
  assert (workdir / "tokenizer.model").stat().st_size > 0
  assert checkpoint_steps(workdir) == [300]


def test_checkpoint_rotation_keeps_the_newest_and_a_longer_run_continues(
  tmp_path, tiny_config, caplog
):
  config = tiny_config
  config.train.update(num_steps=8, checkpoint_every=2, max_to_keep=2)
  workdir = tmp_path / "rotation"
  (workdir / "checkpoints").mkdir(parents=True)
  (workdir / "notes.txt").write_text("mine")
  (workdir / "checkpoints" / "notes.txt").write_text("mine too")

  trainer.train_and_evaluate(config, str(workdir), LanguageModelTask)
  assert checkpoint_steps(workdir) == [6, 8]
  first = train_losses(workdir)

  config.train.num_steps = 12
  with caplog.at_level(logging.WARNING):
    final = trainer.train_and_evaluate(config, str(workdir), LanguageModelTask)
  assert "Resumed from step 8" in caplog.text
  assert final["step"] == 12
  assert checkpoint_steps(workdir) == [10, 12]
  second = train_losses(workdir)
  assert sorted(second) == list(range(1, 13))
  assert {s: second[s] for s in first} == first  # steps 1-8 kept, not trained again
  assert (workdir / "notes.txt").read_text() == "mine"
  assert (workdir / "checkpoints" / "notes.txt").read_text() == "mine too"


# --- clear errors, nothing lost ---------------------------------------------------------------


def test_resuming_with_a_config_that_does_not_fit_names_the_parameter(
  tmp_path, trained_run, tiny_config
):
  workdir = tmp_path / "copy"
  shutil.copytree(trained_run.workdir, workdir)
  before = tree_digest(workdir)
  tiny_config.model.update(d_model=48, num_heads=2)
  expected = (
    r"parameter \S+ has shape \(.*32.*\) in checkpoint step 40 .* but \(.*48.*\) in the model"
  )
  with pytest.raises(ValueError, match=expected):
    trainer.train_and_evaluate(tiny_config, str(workdir), LanguageModelTask)
  assert tree_digest(workdir) == before


def test_resuming_with_another_num_heads_names_the_setting(tmp_path, trained_run, tiny_config):
  # Every parameter shape is the same with 4 heads of 8 as with 2 heads of 16: only the saved
  # config can tell that the checkpoint belongs to another model.
  workdir = tmp_path / "copy"
  shutil.copytree(trained_run.workdir, workdir)
  before = tree_digest(workdir)
  assert tiny_config.model.num_heads == 2
  tiny_config.model.num_heads = 4
  with pytest.raises(ValueError, match=r"model.num_heads: checkpoint 2, config 4"):
    trainer.train_and_evaluate(tiny_config, str(workdir), LanguageModelTask)
  assert tree_digest(workdir) == before


def test_checkpoints_between_log_steps_are_rejected(tmp_path, tiny_config):
  tiny_config.train.update(log_every=4, checkpoint_every=6)
  with pytest.raises(ValueError, match=r"checkpoint_every=6 must be a positive multiple of"):
    trainer.train_and_evaluate(tiny_config, str(tmp_path / "w"), LanguageModelTask)
  assert not (tmp_path / "w").exists()


def test_d_model_not_divisible_by_num_heads_is_rejected(tmp_path, tiny_config):
  tiny_config.model.update(d_model=30, num_heads=4)
  with pytest.raises(ValueError, match="d_model=30 is not divisible by num_heads=4"):
    trainer.train_and_evaluate(tiny_config, str(tmp_path / "w"), LanguageModelTask)
  assert not (tmp_path / "w").exists()


def test_a_misspelled_config_key_on_the_command_line_names_it(tmp_path, train_command, run_cli):
  done = run_cli(train_command(tmp_path / "w", {"model.num_layer": 3}))
  assert done.returncode != 0
  assert "num_layer" in done.stderr and 'Did you mean "num_layers"' in done.stderr
  assert not (tmp_path / "w").exists()


def test_an_unknown_text_field_lists_the_dataset_features(tmp_path, tiny_config):
  tiny_config.data.text_field = "body"
  with pytest.raises(ValueError, match=r"no feature 'body'; its features are .*'extract'"):
    trainer.train_and_evaluate(tiny_config, str(tmp_path / "w"), LanguageModelTask)


def test_an_empty_train_split_is_a_clear_error(tmp_path, tiny_config):
  tiny_config.data.train_split = "train[:0]"
  with pytest.raises(ValueError, match=r"split 'train\[:0\]' of dataset .* has no text"):
    trainer.train_and_evaluate(tiny_config, str(tmp_path / "w"), LanguageModelTask)
