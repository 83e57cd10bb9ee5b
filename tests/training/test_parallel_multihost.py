"""Multi-host training for real: two `python -m train.train` processes on this machine (4 CPU
devices each, coordinator on 127.0.0.1, gloo collectives) against one process with 8 devices.

The corpus is prepared by the session fixtures before any process starts, so the processes
only read it. Each process runs under `run_recording_writes`, which lists the paths it writes.
"""

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import time

import numpy as np
import pytest

from tfjax.training import metrics

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
# Global batch 8 on 8 devices either way; no dropout, so the two runs draw no random masks.
RUN = {
  "train.batch_size": 8,
  "train.num_steps": 8,
  "train.checkpoint_every": 4,
  "train.eval_every": 4,
  "model.dropout_rate": 0.0,
  "model.attention_dropout_rate": 0.0,
}
TIMEOUT_S = 120  # per launch (one or two processes); a run takes ~15 s
# What only process 0 writes: logs, summaries, the report and the run's files.
MAIN_OUTPUTS = (
  "config.json",
  "tokenizer.model",
  "metrics.jsonl",
  "tensorboard",
  "loss.png",
  "final_metrics.json",
  "samples.txt",
)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(argvs: list[list[str]], logs: pathlib.Path, env: dict[str, str]) -> list[dict]:
  """Runs the argvs as concurrent processes, each recording its writes, with its own stdout and
  stderr; kills them all when one fails or the time is up. Returns their outputs."""
  logs.mkdir(parents=True)
  processes, files = [], []
  try:
    for i, argv in enumerate(argvs):
      out, err = open(logs / f"{i}.out", "w"), open(logs / f"{i}.err", "w")
      files += [out, err]
      # argv is [python, -m, train.train, flags...]: run the same module and flags, recorded
      recorded = [argv[0], "-m", "tests.training.run_recording_writes", str(logs / f"{i}.writes")]
      processes.append(
        subprocess.Popen(recorded + argv[2:], cwd=REPO_ROOT, env=env, stdout=out, stderr=err)
      )
    deadline = time.monotonic() + TIMEOUT_S
    while any(p.poll() is None for p in processes):
      failed = [i for i, p in enumerate(processes) if p.poll()]
      assert not failed, f"process {failed[0]} failed:\n" + read(logs / f"{failed[0]}.err")[-3000:]
      assert time.monotonic() < deadline, f"the processes ran past {TIMEOUT_S} s"
      time.sleep(0.1)
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
      p.wait()
    for f in files:
      f.close()
  for i, p in enumerate(processes):
    assert p.returncode == 0, f"process {i} failed:\n" + read(logs / f"{i}.err")[-3000:]
  return [
    {
      "stdout": read(logs / f"{i}.out"),
      "stderr": read(logs / f"{i}.err"),
      "writes": set(read(logs / f"{i}.writes").split("\n")) - {""},
    }
    for i in range(len(argvs))
  ]


def read(path: pathlib.Path) -> str:
  return path.read_text() if path.exists() else ""


def two_processes(workdir, train_command, overrides) -> list[list[str]]:
  port = free_port()
  return [
    train_command(
      workdir,
      {
        **overrides,
        "parallel.distributed.enabled": True,
        "parallel.distributed.coordinator_address": f"127.0.0.1:{port}",
        "parallel.distributed.num_processes": 2,
        "parallel.distributed.process_id": i,
        "parallel.distributed.local_cpu_devices": 4,
      },
    )
    for i in range(2)
  ]


def losses(workdir, split: str) -> dict[int, float]:
  records = [r for r in metrics.read_metrics(str(workdir)) if r["split"] == split]
  steps = [r["step"] for r in records]
  assert len(steps) == len(set(steps)), f"duplicate {split} steps in {workdir}: {steps}"
  return {r["step"]: r["loss"] for r in records}


def checkpoint_steps(workdir) -> list[int]:
  return sorted(
    int(p.name) for p in (pathlib.Path(workdir) / "checkpoints").iterdir() if p.name.isdigit()
  )


def assert_same_losses(workdir, expected: dict[str, dict[int, float]]) -> dict[str, float]:
  """Train and eval losses of `workdir` against `expected` (1e-5 relative); the largest
  relative difference of each split."""
  differences = {}
  for split, want in expected.items():
    got = losses(workdir, split)
    assert sorted(got) == sorted(want), (split, sorted(got), sorted(want))
    np.testing.assert_allclose([got[s] for s in want], list(want.values()), rtol=1e-5, atol=0)
    differences[split] = max(abs(got[s] - want[s]) / abs(want[s]) for s in want)
  return differences


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, train_command, cli_env) -> dict[str, dict[int, float]]:
  """Train and eval losses of the run on one process with 8 devices."""
  root = tmp_path_factory.mktemp("one_process")
  overrides = {**RUN, "parallel.distributed.local_cpu_devices": 8}
  launch([train_command(root / "workdir", overrides)], root / "logs", cli_env)
  expected = {split: losses(root / "workdir", split) for split in ("train", "eval")}
  assert sorted(expected["train"]) == list(range(1, 9)) and sorted(expected["eval"]) == [4, 8]
  assert expected["train"][8] < expected["train"][1]  # it trains
  return expected


def test_two_processes_train_like_one_process_with_8_devices_and_resume(
  tmp_path, one_process, train_command, cli_env, tiny_overrides
):
  start = time.perf_counter()
  workdir = tmp_path / "two_processes"
  two = launch(two_processes(workdir, train_command, RUN), tmp_path / "logs", cli_env)

  # Same losses: the global batch is assembled from each process's own shard of the data.
  differences = assert_same_losses(workdir, one_process)

  # Only process 0 writes logs and summaries; process 1 writes only its part of the checkpoints.
  def written_in(writes: set[str]) -> set[str]:
    return {os.path.relpath(p, workdir) for p in writes if p.startswith(f"{workdir}{os.sep}")}

  by_main, by_other = written_in(two[0]["writes"]), written_in(two[1]["writes"])
  tops = lambda written: {p.split(os.sep)[0] for p in written}
  assert set(MAIN_OUTPUTS) <= tops(by_main), sorted(by_main)
  assert tops(by_other) == {"checkpoints"}, sorted(by_other)
  assert any(p.endswith("process_1-of-2.json") for p in by_other), sorted(by_other)
  assert sorted(os.listdir(workdir)) == sorted({*MAIN_OUTPUTS, "checkpoints", "train.lock"})
  # Neither process writes to the prepared corpus, tokenizer or token cache.
  data_dirs = [tiny_overrides["data.tfds_data_dir"], tiny_overrides["data.cache_dir"]]
  for process in two:
    assert not [p for p in process["writes"] for d in data_dirs if p.startswith(d)]
  # The report and the progress bar come from process 0 alone.
  progress_bar = re.compile(r"train:\s+\d+%")
  assert "validation loss" in two[0]["stdout"] and progress_bar.search(two[0]["stderr"])
  assert "validation loss" not in two[1]["stdout"] and not progress_bar.search(two[1]["stderr"])
  assert json.loads((workdir / "final_metrics.json").read_text())["step"] == 8

  # Checkpoints written together: the state, and each process's data iterator position.
  assert checkpoint_steps(workdir) == [4, 8]
  data_states = os.listdir(workdir / "checkpoints" / "8" / "data")
  assert sorted(f for f in data_states if f.endswith(".json")) == [
    "process_0-of-2.json",
    "process_1-of-2.json",
  ]

  # Resume: as if killed after the step-4 checkpoint; both processes restore and continue.
  shutil.rmtree(workdir / "checkpoints" / "8")
  resumed = launch(two_processes(workdir, train_command, RUN), tmp_path / "resumed", cli_env)
  for process in resumed:
    assert "Resumed from step 4" in process["stderr"], process["stderr"][-2000:]
  assert checkpoint_steps(workdir) == [4, 8]
  resumed_differences = assert_same_losses(workdir, one_process)
  print(
    f"one process x 8 devices, train losses {[round(v, 6) for v in one_process['train'].values()]}"
    f"; two processes x 4 devices, max relative difference {differences}, after resuming from "
    f"step 4 {resumed_differences}; {time.perf_counter() - start:.0f} s"
  )


def test_pmap_mode_on_two_processes_evaluates_the_whole_batch(
  tmp_path, one_process, train_command, cli_env
):
  # pmap hands each process only its own devices' values: the eval loss must still be the
  # whole global batch's, as on one process.
  workdir = tmp_path / "pmap"
  overrides = {**RUN, "parallel.mode": "pmap"}
  launch(two_processes(workdir, train_command, overrides), tmp_path / "logs", cli_env)
  print(f"pmap, two processes: max relative difference {assert_same_losses(workdir, one_process)}")


def test_sigterm_to_one_process_stops_both_at_the_same_step_and_they_resume(
  tmp_path, one_process, train_command, cli_env
):
  """Preemption of one host: JAX's preemption sync point makes every process save the same
  step; the resumed pair gives the losses of one uninterrupted process."""
  workdir = tmp_path / "preempted"
  argvs = two_processes(workdir, train_command, RUN)
  logs = [(tmp_path / f"{i}.err").open("w") for i in range(2)]
  processes = [
    subprocess.Popen(argv, cwd=REPO_ROOT, env=cli_env, stdout=subprocess.DEVNULL, stderr=log)
    for argv, log in zip(argvs, logs, strict=True)
  ]
  try:
    deadline = time.monotonic() + TIMEOUT_S
    while not (workdir / "metrics.jsonl").exists() or not losses(workdir, "train"):
      assert all(p.poll() is None for p in processes), read(tmp_path / "0.err")[-3000:]
      assert time.monotonic() < deadline
      time.sleep(0.002)
    for p in processes:
      p.send_signal(signal.SIGSTOP)
    # Only process 0 (the coordinator's host) is preempted. Its notifier polls once a second:
    # process 1 stays stopped meanwhile, so the pair cannot run to the end before it reports.
    processes[0].send_signal(signal.SIGTERM)
    processes[0].send_signal(signal.SIGCONT)
    time.sleep(2.0)
    processes[1].send_signal(signal.SIGCONT)
    codes = [p.wait(timeout=TIMEOUT_S) for p in processes]
  finally:
    for p in processes:
      p.kill()
      p.wait()
    for log in logs:
      log.close()
  stderr = [read(tmp_path / f"{i}.err") for i in range(2)]
  assert codes == [128 + signal.SIGTERM] * 2, stderr
  stops = [re.findall(r"stopped: SIGTERM after step (\d+)", err) for err in stderr]
  assert stops[0] == stops[1] and len(stops[0]) == 1, stderr
  step = int(stops[0][0])
  assert step < RUN["train.num_steps"] and checkpoint_steps(workdir)[-1] == step
  data_states = os.listdir(workdir / "checkpoints" / str(step) / "data")
  assert {"process_0-of-2.json", "process_1-of-2.json"} <= set(data_states)

  launch(two_processes(workdir, train_command, RUN), tmp_path / "resumed", cli_env)
  assert_same_losses(workdir, one_process)
  print(f"process 0 got SIGTERM after step 1: both saved step {step} of {RUN['train.num_steps']}")
