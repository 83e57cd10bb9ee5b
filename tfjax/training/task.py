"""What the trainer asks of a model family and its objective: a `Task`.

`train_and_evaluate` owns everything every run shares (mesh, state, the parallel step, the
loop, checkpoints, metrics, resume); a task owns what differs: its config checks, its data, its
model and loss, and its report at the end. `config.task` names the task (`TASKS` in trainer.py).
"""

import abc
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from tfjax.training.step import LossFn

# Model settings that may change on resume: they change no parameter and no data.
MAY_CHANGE_ON_RESUME = ("dtype", "dropout_rate", "attention_dropout_rate", "remat_policy")


@dataclasses.dataclass
class TaskData:
  """The data of one run, as the loop consumes it."""

  train_iter: Iterator[dict[str, np.ndarray]]  # this process's rows; checkpointable (grain)
  eval_batches: list[dict[str, np.ndarray]]  # whole global batches, the same on every process
  tokens_per_example: int  # for the throughput (tokens/s) and MFU
  # Writes what a workdir needs beside the checkpoints to be used later (the tokenizer).
  save_files: Callable[[str], None] = lambda workdir: None


class Task(abc.ABC):
  """One objective on one model family. Subclasses set the class attributes below."""

  model_config_cls: type  # frozen dataclass with from_config (e.g. GPTConfig)
  # Config keys (beyond the model's architecture) a resumed run must share with its checkpoint.
  run_identity: tuple[str, ...] = ("train.seed",)

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.model_config = self.model_config_cls.from_config(config.model)
    self.validate()

  def validate(self) -> None:  # noqa: B027 (optional hook)
    """Task-specific config checks, before any data or compilation; raise ValueError."""

  @abc.abstractmethod
  def prepare_data(self, workdir: str, process_index: int, process_count: int) -> TaskData:
    """Prepares (once, cached) and opens the data; `workdir` may hold a run to resume."""

  @abc.abstractmethod
  def model(self, activation_sharding: Any = None) -> nn.Module:
    """The training model; `activation_sharding` pins activations to the batch split."""

  @abc.abstractmethod
  def init_params(self, rng: jax.Array) -> Any:
    """Fresh parameters (called under jit and `jax.eval_shape`)."""

  @abc.abstractmethod
  def loss_fn(self, model: nn.Module) -> LossFn:
    """The loss the step differentiates (see tfjax.training.step)."""

  def initial_params(self, params: Any) -> Any:
    """Parameters a fresh run starts from; fine-tuning puts pre-trained weights in here."""
    return params

  def summarize(self, metrics: dict[str, float]) -> dict[str, float]:
    """Derived metrics (e.g. perplexity) from the token-weighted means of a window or eval."""
    return metrics

  def flops_per_token(self, abstract_params: Any) -> float | None:
    """Training FLOPs per token, for MFU; None leaves MFU out."""
    return None

  def finish(self, params: Any, workdir: str, final: dict[str, Any], data: TaskData) -> list[str]:
    """After training: adds final metrics to `final`, writes outputs, returns report lines.

    Runs on every process (it may compute with sharded params); only process 0 writes files.
    """
    return []
