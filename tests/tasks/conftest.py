"""Fixtures of the task tests: no matmul benchmark in process, and the tiny runs that several
test files share (made once per session and worker): BERT pre-training and fine-tuning, and a
GPT LM for the GPT fine-tuning, prompt -> response and LoRA tests."""

import pytest

from configs import gpt_tiny
from tests.conftest import apply_overrides
from tests.tasks.bert_runs import (
  Run,
  fine_tuning_config,
  fixed_peak_flops,
  pretraining_config,
  run_once,
)


@pytest.fixture(autouse=True)
def no_flops_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
  fixed_peak_flops(monkeypatch)


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
  """One TFDS data dir for the session: each dataset is built on first use, then read."""
  return str(tmp_path_factory.mktemp("bert_tfds"))


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


@pytest.fixture(scope="session")
def gpt_pretrained(tmp_path_factory: pytest.TempPathFactory, tiny_overrides: dict) -> Run:
  """A 2-step run of the tiny GPT LM (its tokenizer and corpus those of the LM tests)."""
  overrides = {
    **tiny_overrides,
    "train.num_steps": 2,
    "train.warmup_steps": 1,
    "train.checkpoint_every": 2,
  }
  workdir = tmp_path_factory.mktemp("gpt_pretrained") / "workdir"
  return run_once(apply_overrides(gpt_tiny.get_config(), overrides), workdir)
