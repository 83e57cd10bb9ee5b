"""End-to-end fixtures: the real corpus prepared once, a tiny GPT config, a tiny trained workdir.

`python -m train.train` subprocesses share a persistent JAX compilation cache (a session tmp dir),
so only the first one compiles; a cached executable computes the same bits as a fresh one.
"""

import dataclasses
import os
import pathlib
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

# XLA's CPU backend spends most of this suite compiling tiny programs; without LLVM's
# optimisation passes and the fusion emitters it compiles them about twice as fast (measured: the
# ViT model and task tests 103 s -> 53 s) and computes the same values up to float rounding, the
# same in every run. Set before JAX starts (a user's own XLA_FLAGS win); CLI subprocesses too.
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
os.environ.setdefault("XLA_FLAGS", FAST_COMPILE_FLAGS)

import ml_collections  # noqa: E402
import pytest  # noqa: E402

from configs import gpt_tiny  # noqa: E402
from tfjax.data import lm as lm_data  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

TINY_OVERRIDES = gpt_tiny.SECONDS_OVERRIDES  # configs/gpt_tiny.py shrunk to seconds

# The run of `trained_run`: dropout on, so resuming must restore the rng as well as the data.
REFERENCE_RUN: dict[str, Any] = {
  "model.dropout_rate": 0.1,
  "train.num_steps": 40,
  "train.checkpoint_every": 4,
}


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  workdir: pathlib.Path
  overrides: dict[str, Any]  # on top of the tiny ones


def apply_overrides(
  config: ml_collections.ConfigDict, overrides: Mapping[str, Any]
) -> ml_collections.ConfigDict:
  for key, value in overrides.items():
    section, name = key.split(".")
    config[section][name] = value
  return config


@pytest.fixture(scope="session")
def lm_data_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
  """TFDS dir and token cache dir with the corpus, tokenizer and token streams built once."""
  root = tmp_path_factory.mktemp("lm_data")
  dirs = {"data.tfds_data_dir": str(root / "tfds"), "data.cache_dir": str(root / "cache")}
  config = apply_overrides(gpt_tiny.get_config(), {**TINY_OVERRIDES, **dirs})
  lm_data.prepare_lm_data(config.data, vocab_size=config.model.vocab_size)
  return dirs


@pytest.fixture(scope="session")
def tiny_overrides(lm_data_dirs: dict[str, str]) -> dict[str, Any]:
  return {**TINY_OVERRIDES, **lm_data_dirs}


@pytest.fixture
def tiny_config(tiny_overrides: dict[str, Any]) -> ml_collections.ConfigDict:
  """A fresh configs/gpt_tiny.py config with the tiny sizes and the prepared data dirs."""
  return apply_overrides(gpt_tiny.get_config(), tiny_overrides)


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
  """Environment of CLI subprocesses: CPU, and one persistent compilation cache for all."""
  env = dict(os.environ)
  env.update(
    XLA_FLAGS=FAST_COMPILE_FLAGS,  # not the caller's (device counts are the tests' to set)
    JAX_PLATFORMS="cpu",
    JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("jax_cache")),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
  )
  return env


@pytest.fixture(scope="session")
def train_command(tiny_overrides: dict[str, Any]) -> Callable[..., list[str]]:
  """`train_command(workdir, overrides)`: the argv of `python -m train.train` on the tiny config."""

  def command(workdir: os.PathLike, overrides: Mapping[str, Any] = ()) -> list[str]:
    flags = [f"--config.{k}={v}" for k, v in {**tiny_overrides, **dict(overrides)}.items()]
    return [sys.executable, "-m", "train.train", "--config=configs/gpt_tiny.py"] + [
      f"--workdir={workdir}",
      *flags,
    ]

  return command


@pytest.fixture(scope="session")
def run_cli(cli_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess]:
  """Runs an argv in the repo root; returns the completed process (stdout, stderr as text)."""

  def run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
      argv, cwd=REPO_ROOT, env=cli_env, capture_output=True, text=True, timeout=timeout
    )

  return run


@pytest.fixture(scope="session")
def trained_run(
  tmp_path_factory: pytest.TempPathFactory,
  train_command: Callable[..., list[str]],
  run_cli: Callable[..., subprocess.CompletedProcess],
) -> TrainedRun:
  """An uninterrupted `python -m train.train` run of REFERENCE_RUN on the tiny config."""
  workdir = tmp_path_factory.mktemp("trained") / "workdir"
  done = run_cli(train_command(workdir, REFERENCE_RUN))
  assert done.returncode == 0, done.stderr[-3000:]
  return TrainedRun(workdir, dict(REFERENCE_RUN))
