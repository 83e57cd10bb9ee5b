"""Starts a tests/training/run_*_on_8_devices.py script in a subprocess (the simulated device
count is fixed when JAX starts) and reads back the arrays it saved."""

import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]


def results_of(script_module: str, out_dir: pathlib.Path) -> dict[str, np.ndarray]:
  """Runs `python -m <script_module> OUT.npz` in the repo root, without the caller's XLA_FLAGS
  (the script sets its own); the script's stderr tail on failure."""
  out = out_dir / "runs.npz"
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  done = subprocess.run(
    [sys.executable, "-m", script_module, str(out)],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert done.returncode == 0, done.stderr[-4000:]
  return dict(np.load(out))
