"""Faults injected for real into real runs of the tiny GPT config (`python -m train.train`
subprocesses): an exploding learning rate, damaged checkpoints, SIGTERM, a full disk and a second
run on a live workdir. Each asserts what the user sees (one line, the exit status) and that the
last good state is intact and resumes to the losses of the uninterrupted `trained_run`."""

import hashlib
import math
import os
import pathlib
import shutil
import signal
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.reliability.mounts import resize, tmpfs
from tfjax.models.gpt import GPT, GPTConfig
from tfjax.training import checkpoint, metrics

ROOT = pathlib.Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------- helpers


def train_losses(workdir: pathlib.Path) -> dict[int, float]:
  records = [r for r in metrics.read_metrics(str(workdir)) if r["split"] == "train"]
  steps = [r["step"] for r in records]
  assert len(steps) == len(set(steps)), f"duplicate train steps in {workdir}: {steps}"
  return {r["step"]: r["loss"] for r in records}


def checkpoint_steps(workdir: pathlib.Path) -> list[int]:
  root = workdir / "checkpoints"
  return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.exists() else []


def digest(root: pathlib.Path) -> dict[str, str]:
  """sha256 of every file under `root`, by relative path."""
  return {
    str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
    for p in sorted(root.rglob("*"))
    if p.is_file()
  }


def stopped_line(done: subprocess.CompletedProcess) -> str:
  """The one line a run that stopped early leaves for the user (and no traceback)."""
  assert "Traceback" not in done.stderr, done.stderr[-3000:]
  lines = [line for line in done.stderr.splitlines() if line.startswith(("stopped:", "error:"))]
  assert len(lines) == 1, done.stderr[-3000:]
  return lines[0]


def assert_resumes_to_the_reference(done, workdir, trained_run) -> None:
  assert done.returncode == 0, done.stderr[-3000:]
  expected = train_losses(trained_run.workdir)
  assert train_losses(workdir) == expected  # every step, bit for bit


def saved_params(workdir: pathlib.Path, step: int):
  with open(workdir / "config.json") as f:
    import json

    config = GPTConfig.from_config(json.load(f)["model"])
  abstract = jax.eval_shape(
    GPT(config).init, jax.random.key(0), jnp.zeros((1, config.max_len), jnp.int32)
  )["params"]
  return checkpoint.restore_params(str(workdir), abstract, step)


def start(argv, cli_env) -> subprocess.Popen:
  return subprocess.Popen(
    argv, cwd=ROOT, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
  )


def pause_once_training(process: subprocess.Popen, workdir: pathlib.Path) -> None:
  """SIGSTOPs `process` as soon as it has logged its first step (it holds the workdir)."""
  deadline = time.monotonic() + 120
  while not (workdir / "metrics.jsonl").exists() or not train_losses(workdir):
    assert process.poll() is None, process.communicate()[1][-3000:]
    assert time.monotonic() < deadline, "no step logged after 120 s"
    time.sleep(0.002)
  process.send_signal(signal.SIGSTOP)


# --------------------------------------------------------------------------------- non-finite


def test_a_diverging_run_stops_at_its_first_nan_step_with_the_good_checkpoints_kept(
  tmp_path, trained_run, train_command, run_cli
):
  workdir = tmp_path / "diverging"
  overrides = {**trained_run.overrides, "train.learning_rate": 1e4, "train.max_to_keep": 2}
  done = run_cli(train_command(workdir, overrides))

  assert done.returncode == 1
  line = stopped_line(done)
  bad_step = int(line.split("step ")[1].split()[0])
  assert "non-finite loss or gradient (loss nan" in line and "on_nonfinite='skip'" in line
  kept = checkpoint_steps(workdir)
  assert kept and max(kept) < bad_step, (kept, bad_step)
  assert f"step {max(kept)} in" in line
  for step in kept:  # what is kept is good
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(saved_params(workdir, step)))
  logged = train_losses(workdir)
  assert max(logged) == bad_step - 1 and all(math.isfinite(v) for v in logged.values())
  assert not (workdir / "final_metrics.json").exists()

  # The same command resumes from the kept checkpoint, retraces the same losses exactly and
  # stops at the same step.
  again = run_cli(train_command(workdir, overrides))
  assert again.returncode == 1 and stopped_line(again) == line
  assert f"Resumed from step {max(kept)}" in again.stderr
  assert train_losses(workdir) == logged


def test_skip_mode_skips_nan_updates_and_stops_after_too_many_in_a_row(
  tmp_path, trained_run, train_command, run_cli
):
  workdir = tmp_path / "skipping"
  overrides = {
    **trained_run.overrides,
    "train.learning_rate": 1e4,
    "train.on_nonfinite": "skip",
    "train.max_consecutive_nonfinite": 3,
  }
  done = run_cli(train_command(workdir, overrides))

  assert done.returncode == 1
  line = stopped_line(done)
  assert "3 updates in a row had non-finite gradients and were skipped" in line
  records = [r for r in metrics.read_metrics(str(workdir)) if r["split"] == "train"]
  skipped = [r["skipped_updates"] for r in records]
  assert skipped == sorted(skipped) and 0 < skipped[-1] <= 3  # counted, never applied
  for step in checkpoint_steps(workdir):  # skipped updates left the parameters finite
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(saved_params(workdir, step)))


# ----------------------------------------------------------------------- unreadable checkpoints


def truncate_a_data_file(folder: pathlib.Path) -> None:
  biggest = max((folder / "state" / "ocdbt.process_0" / "d").iterdir(), key=os.path.getsize)
  os.truncate(biggest, 10)


def truncate_every_data_file(folder: pathlib.Path) -> None:
  """Parameters and optimizer moments alike (which file holds which is the writer's choice)."""
  for file in (folder / "state" / "ocdbt.process_0" / "d").iterdir():
    os.truncate(file, 10)


def delete_a_data_file(folder: pathlib.Path) -> None:
  biggest = max((folder / "state" / "ocdbt.process_0" / "d").iterdir(), key=os.path.getsize)
  biggest.unlink()


def garble_the_metadata(folder: pathlib.Path) -> None:
  (folder / "state" / "_METADATA").write_text('{"tree_metadata": {')


def test_unreadable_newest_checkpoints_are_set_aside_and_the_run_resumes_from_an_older_one(
  tmp_path, trained_run, train_command, run_cli
):
  workdir = tmp_path / "damaged"
  shutil.copytree(trained_run.workdir, workdir)
  *_, older, newer, newest = checkpoint_steps(workdir)
  garble_the_metadata(workdir / "checkpoints" / str(newest))
  truncate_a_data_file(workdir / "checkpoints" / str(newer))
  delete_a_data_file(workdir / "checkpoints" / str(newer))
  damaged = {s: digest(workdir / "checkpoints" / str(s)) for s in (newer, newest)}

  done = run_cli(train_command(workdir, trained_run.overrides))

  assert "Traceback" not in done.stderr and "Event loop" not in done.stderr, done.stderr[-3000:]
  warnings = [line for line in done.stderr.splitlines() if "cannot be read" in line]
  assert len(warnings) == 2, done.stderr[-3000:]
  for line, step in zip(warnings, (newest, newer), strict=True):
    assert f"checkpoint {step} in" in line and f"renamed it to {step}.unreadable" in line
  assert f"Resumed from step {older}" in done.stderr
  for step in (newer, newest):  # nothing lost
    assert digest(workdir / "checkpoints" / f"{step}.unreadable") == damaged[step]
  assert_resumes_to_the_reference(done, workdir, trained_run)


def test_sampling_reads_past_an_unreadable_checkpoint_without_changing_the_workdir(
  tmp_path, trained_run, run_cli
):
  import sys

  workdir = tmp_path / "damaged"
  shutil.copytree(trained_run.workdir, workdir)
  newest = max(checkpoint_steps(workdir))
  truncate_every_data_file(workdir / "checkpoints" / str(newest))
  before = digest(workdir)

  done = run_cli(
    [
      sys.executable,
      "-m",
      "train.sample",
      f"--workdir={workdir}",
      "--prompt=The",
      "--max_new_tokens=4",
    ]
  )

  assert done.returncode == 0, done.stderr[-3000:]
  assert "Traceback" not in done.stderr and done.stdout.startswith("The")
  assert sum("cannot be read" in line for line in done.stderr.splitlines()) == 1
  assert digest(workdir) == before


def test_when_no_checkpoint_is_readable_the_run_names_them_and_never_starts_afresh(
  tmp_path, trained_run, train_command, run_cli
):
  workdir = tmp_path / "all_damaged"
  shutil.copytree(trained_run.workdir, workdir)
  steps = checkpoint_steps(workdir)
  for step in steps:
    truncate_a_data_file(workdir / "checkpoints" / str(step))
  logged = (workdir / "metrics.jsonl").read_text()

  for _ in range(2):  # and the same again: only set-aside checkpoints are left
    done = run_cli(train_command(workdir, trained_run.overrides))
    assert done.returncode == 1
    line = stopped_line(done)
    assert "no checkpoint in" in line and "can be read" in line
    assert all(f"{step}.unreadable" in line for step in steps), line
  assert checkpoint_steps(workdir) == []
  assert (workdir / "metrics.jsonl").read_text() == logged  # the record of the run is kept


# -------------------------------------------------------------------------------- preemption


def test_sigterm_saves_the_current_step_and_the_resumed_run_matches_a_second_run_refused(
  tmp_path, trained_run, train_command, cli_env, run_cli
):
  workdir = tmp_path / "preempted"
  argv = train_command(workdir, trained_run.overrides)
  process = start(argv, cli_env)
  try:
    pause_once_training(process, workdir)
    # A second run on the workdir while the first lives (stopped, holding it) refuses.
    second = run_cli(argv)
    assert second.returncode == 1
    assert f"is in use by another run (pid {process.pid} on" in stopped_line(second)
    process.send_signal(signal.SIGTERM)  # delivered when it continues
    process.send_signal(signal.SIGCONT)
    _, stderr = process.communicate(timeout=120)
  finally:
    process.kill()
  done = subprocess.CompletedProcess(argv, process.returncode, "", stderr)

  assert done.returncode == 128 + signal.SIGTERM, stderr[-3000:]
  line = stopped_line(done)
  saved = max(checkpoint_steps(workdir))
  assert f"SIGTERM after step {saved}: saved checkpoint {saved}" in line
  assert max(train_losses(workdir)) == saved < trained_run.overrides["train.num_steps"]

  assert_resumes_to_the_reference(run_cli(argv), workdir, trained_run)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_exits_at_once(signum, cli_env):
  import sys

  script = (
    "import os, signal, time\n"
    "from tfjax.training import preemption\n"
    "stop = preemption.StopRequests().install()\n"
    f"os.kill(os.getpid(), {int(signum)})\n"
    "assert stop.requested(1)\n"
    f"os.kill(os.getpid(), {int(signum)})\n"
    "time.sleep(30)\n"
  )
  done = subprocess.run(
    [sys.executable, "-c", script], cwd=ROOT, env=cli_env, capture_output=True, text=True
  )
  assert done.returncode == 128 + signum, done.stderr[-3000:]
  assert "again: exiting now, without saving" in done.stderr


# ------------------------------------------------------------------------------ full disk


def test_a_full_disk_stops_the_run_and_it_resumes_once_space_is_freed(
  tmp_path, trained_run, train_command, run_cli
):
  workdir = tmp_path / "full"
  (workdir / "checkpoints").mkdir(parents=True)
  # Room for about two checkpoints of the tiny model (~0.4 MB each), on the checkpoints only.
  with tmpfs(workdir / "checkpoints", 1_000_000) as disk:
    argv = train_command(workdir, {**trained_run.overrides, "train.max_to_keep": 10})
    done = run_cli(argv)

    assert done.returncode == 1
    line = stopped_line(done)
    assert f"could not write a checkpoint to {workdir / 'checkpoints'}" in line, line
    assert "No space left on device" in line and "MB free there" in line
    kept = checkpoint_steps(workdir)
    assert kept and max(kept) < trained_run.overrides["train.num_steps"]
    before = {step: digest(workdir / "checkpoints" / str(step)) for step in kept}
    for step in kept:
      saved_params(workdir, step)  # reads

    resize(disk, 16_000_000)
    resumed = run_cli(argv)
    assert {step: digest(workdir / "checkpoints" / str(step)) for step in kept} == before
    assert_resumes_to_the_reference(resumed, workdir, trained_run)


def test_a_failed_checkpoint_write_stops_the_run_in_one_line_with_the_earlier_ones_kept(
  tmp_path, tiny_config, monkeypatch
):
  """The same without a mount (an injected ENOSPC), for machines that may not mount a tmpfs."""
  from tfjax.tasks.lm import LanguageModelTask
  from tfjax.training import faults, trainer

  monkeypatch.setattr(metrics, "measure_matmul_peak_flops", lambda *a, **k: 1e11)
  tiny_config.train.update(num_steps=12, checkpoint_every=4)
  save = checkpoint.ocp.CheckpointManager.save

  def save_until_the_disk_is_full(manager, step, *args, **kwargs):
    if step > 4:
      raise OSError(28, "No space left on device")
    return save(manager, step, *args, **kwargs)

  monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "save", save_until_the_disk_is_full)
  with pytest.raises(faults.RunStopped, match="No space left on device; .* MB free there"):
    trainer.train_and_evaluate(tiny_config, str(tmp_path), LanguageModelTask)
  assert checkpoint_steps(tmp_path) == [4]
  saved_params(tmp_path, 4)  # intact
