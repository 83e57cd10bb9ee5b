r"""SIGKILL a tiny training run at random moments, resume it, compare the losses (issue 11).

A SIGKILL leaves a run no chance to clean up (a lost machine, the OOM killer), wherever it lands:
compiling, stepping, saving async, rotating checkpoints, writing outputs. A reference run of
`python -m train.train` (gpt_tiny shrunk to seconds, dropout on so the rng must resume too, 40
steps, a checkpoint every 4, 2 kept) fills the compilation cache; a second is timed and must
match it. Trial i (numpy seed + i) then starts the run in a fresh workdir, SIGKILLs it 1-3 times
at moments uniform over the timed duration (shortened when a run ends before its first kill:
the trial is then drawn again), rerunning it after each kill, and once more to the end.
It survives when that run exits 0 and metrics.jsonl holds one train record per step 1..40, each
loss equal to the reference's. Kills before the first checkpoint restart from scratch; they count.

  python -m benchmarks.faults                 # 20 trials, ~7 minutes on 2 CPU cores
  python -m benchmarks.faults --trials=3 --seed=0 --workdir=/tmp/faults

One line per trial (each kill: its time, "before the loop" or the newest step logged, "mid-save"
if it left a save unfinished; the checkpoint each rerun resumed from; the result), then
`faults survived: K/N, max loss difference D` (D a float's repr: 0.0 when bit-identical); exit
status 1 when K < N. Failing trials' workdirs are kept, with each run's output in attempt<j>.log.
"""

import dataclasses
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
from absl import app, flags, logging

from configs import gpt_tiny
from tfjax.data import lm as lm_data
from tfjax.training import metrics

_TRIALS = flags.DEFINE_integer("trials", 20, "Runs killed and resumed, each in a fresh workdir.")
_SEED = flags.DEFINE_integer("seed", 0, "Trial i draws its kills from numpy seed + i.")
_MAX_KILLS = flags.DEFINE_integer("max_kills", 3, "Each trial kills its run 1..max_kills times.")
_WORKDIR = flags.DEFINE_string("workdir", "", "Scratch root (default: a fresh temp dir).")

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 300
# configs/gpt_tiny.py shrunk to seconds, with dropout on, frequent checkpoints and rotation.
OVERRIDES: dict[str, Any] = {
  **gpt_tiny.SECONDS_OVERRIDES,
  "model.dropout_rate": 0.1,
  "train.num_steps": 40,
  "train.checkpoint_every": 4,
  "train.max_to_keep": 2,
}
NUM_STEPS = OVERRIDES["train.num_steps"]


def prepare_data(root: pathlib.Path) -> dict[str, str]:
  """Builds the corpus, tokenizer and token streams once; returns the data-dir overrides."""
  dirs = {"data.tfds_data_dir": str(root / "tfds"), "data.cache_dir": str(root / "cache")}
  config = gpt_tiny.get_config()
  config.update_from_flattened_dict({**OVERRIDES, **dirs})
  lm_data.prepare_lm_data(config.data, vocab_size=config.model.vocab_size)
  return dirs


@dataclasses.dataclass(frozen=True)
class Trainer:
  """`python -m train.train` on the tiny config, in the repo root, in a given environment."""

  overrides: dict[str, Any]
  env: dict[str, str]

  def run(self, workdir: pathlib.Path, log: pathlib.Path, kill_at: float) -> int:
    """Trains in `workdir`, SIGKILLing the process group `kill_at` seconds after the start if it
    is still running; returns the exit status (-9 when killed)."""
    flags_ = [f"--workdir={workdir}"] + [f"--config.{k}={v}" for k, v in self.overrides.items()]
    argv = [sys.executable, "-m", "train.train", "--config=configs/gpt_tiny.py", *flags_]
    with open(log, "ab") as out:
      process = subprocess.Popen(
        argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
      )
    try:
      return process.wait(timeout=kill_at)
    except subprocess.TimeoutExpired:
      os.killpg(process.pid, signal.SIGKILL)  # grain workers too, if any
      return process.wait()


def checkpoints(workdir: pathlib.Path) -> tuple[int | None, set[str]]:
  """The newest finalized checkpoint, and the unfinished saves (Orbax writes
  `<step>.orbax-checkpoint-tmp-*`, then renames it `<step>`)."""
  names = [p.name for p in (workdir / "checkpoints").glob("*")]
  finalized = [int(n) for n in names if n.isdigit()]
  return max(finalized, default=None), {n for n in names if not n.isdigit()}


def moment(workdir: pathlib.Path, log: pathlib.Path, unfinished_before: set[str]) -> str:
  """Where a killed run was: before its loop's progress bar (imports, data, compiling,
  restoring), else at the newest step logged (the resumed run has truncated metrics.jsonl by
  then); "mid-save" if it left a save of its own unfinished."""
  where = "before the loop"
  if "train:" in log.read_text(errors="replace"):
    where = f"at step {max(train_losses(workdir)[1], default=0)}"
  return where + (" mid-save" if checkpoints(workdir)[1] - unfinished_before else "")


def train_losses(workdir: pathlib.Path) -> tuple[list[int], dict[int, float]]:
  """The steps of the train records in file order, and the loss logged at each (none yet: [])."""
  if not (workdir / metrics.METRICS_FILE).exists():
    return [], {}
  records = [r for r in metrics.read_metrics(str(workdir)) if r["split"] == "train"]
  return [r["step"] for r in records], {r["step"]: r["loss"] for r in records}


def check(workdir: pathlib.Path, expected: dict[int, float]) -> tuple[str, float]:
  """What is wrong with a run's train records ("" if nothing), and the max absolute loss
  difference from `expected` over the steps both logged (nan if none)."""
  try:
    steps, losses = train_losses(workdir)
  except ValueError as e:  # a torn line before the last
    return f"metrics unreadable: {e}", float("nan")
  diffs = {s: abs(losses[s] - expected[s]) for s in losses.keys() & expected.keys()}
  worst = max(diffs.values(), default=float("nan"))
  if sorted(steps) != list(range(1, NUM_STEPS + 1)):
    return f"train steps logged: {steps}", worst
  differ = [s for s, d in sorted(diffs.items()) if d != 0.0]
  return (f"losses differ at steps {differ}" if differ else ""), worst


def trial(
  i: int, trainer: Trainer, workdir: pathlib.Path, duration: float, expected: dict[int, float]
) -> tuple[str, float, str, float]:
  """Kills and resumes one run; returns (its problem or "", max loss difference, its line, the
  duration to draw kills over next). A run that ends before its first kill (this machine's speed
  drifts) is started over, with kills drawn over the time it took."""
  rng = np.random.default_rng(_SEED.value + i)
  for _ in range(5):
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    kill_times = rng.uniform(0.0, duration, size=rng.integers(1, _MAX_KILLS.value + 1))
    kills, resumed = [], []
    for j, kill_at in enumerate([*kill_times, RUN_TIMEOUT_S]):
      step, unfinished = checkpoints(workdir)
      if j:
        resumed.append("scratch" if step is None else str(step))
      log, start = workdir / f"attempt{j}.log", time.perf_counter()
      status = trainer.run(workdir, log, kill_at)
      if status != -9:  # completed or crashed by itself: no more kills
        kills += [f"{kill_at:.2f}s (exited {status} first)"] if j < len(kill_times) else []
        break
      kills.append(f"{kill_at:.2f}s {moment(workdir, log, unfinished)}")
    if j or status != 0:  # a kill landed, or the run failed by itself
      break
    duration = min(duration, time.perf_counter() - start)
  problem, worst = check(workdir, expected)
  if status != 0:
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    problem = f"run {j} exited {status}: " + " | ".join(tail)
  line = (
    f"trial {i:2d}: killed at {', '.join(kills)}; resumed from {', '.join(resumed) or '-'}; "
    f"{f'FAILED: {problem}' if problem else 'survived'}, max loss difference {worst!r}"
  )
  return problem, worst, line, duration


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:  # the trial lines, not the data preparation's logs
    logging.set_verbosity(logging.WARNING)
  root = pathlib.Path(_WORKDIR.value or tempfile.mkdtemp(prefix="faults_")).resolve()
  root.mkdir(parents=True, exist_ok=True)
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(
    JAX_PLATFORMS="cpu",
    JAX_COMPILATION_CACHE_DIR=str(root / "jax_cache"),  # compiled once, the same bits after
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
  )
  trainer = Trainer({**OVERRIDES, **prepare_data(root / "data")}, env)

  # Reference: the first run fills the compilation cache, the second is timed like the trials.
  for name in ("reference", "timed"):
    workdir = root / name
    shutil.rmtree(workdir, ignore_errors=True)
    start = time.perf_counter()
    status = trainer.run(workdir, root / f"{name}.log", RUN_TIMEOUT_S)
    duration = time.perf_counter() - start
    if status != 0:
      sys.exit(f"the {name} run exited {status}; see {root}/{name}.log")
  expected = train_losses(root / "reference")[1]
  problem, worst = check(root / "timed", expected)
  if problem:
    sys.exit(f"two uninterrupted runs differ ({problem}, max {worst!r}): nothing to compare")
  print(f"reference run: {duration:.1f} s, {NUM_STEPS} steps, final loss {expected[NUM_STEPS]}")

  survived, worst = 0, 0.0
  for i in range(_TRIALS.value):
    workdir = root / f"trial_{i:02d}"
    problem, diff, line, duration = trial(i, trainer, workdir, duration, expected)
    print(line, flush=True)
    survived += not problem
    worst = max(worst, diff) if diff == diff else worst  # nan: no losses to compare
    if not problem:
      shutil.rmtree(workdir)
  print(f"faults survived: {survived}/{_TRIALS.value}, max loss difference {worst!r}")
  if survived < _TRIALS.value:
    sys.exit(f"failing workdirs kept under {root}")
  if not _WORKDIR.value:
    shutil.rmtree(root)


if __name__ == "__main__":
  app.run(main)
