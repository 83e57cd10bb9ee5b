"""What the trainer asks of a model family and its objective: a `Task`.

`train_and_evaluate` owns everything every run shares (mesh, state, the parallel step, the
loop, checkpoints, metrics, resume); a task owns what differs: its config checks, its data, its
model and loss, and its report at the end. The trainer is handed the task's class and imports
no task: `tfjax.tasks.registry` maps the name in `config.task` to its class.
"""

import abc
import dataclasses
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from tfjax.nn import lora as lora_lib
from tfjax.nn.partitioning import PARAM_AXES, ParamAxes
from tfjax.training.step import LossFn

# Model settings that may change on resume: they change no parameter and no data.
MAY_CHANGE_ON_RESUME = ("dtype", "dropout_rate", "attention_dropout_rate", "remat_policy")


@dataclasses.dataclass
class TaskData:
  """The data of one run, as the loop consumes it."""

  train_iter: Iterator[dict[str, np.ndarray]]  # this process's rows; checkpointable (grain)
  eval_batches: list[dict[str, np.ndarray]]  # whole global batches, the same on every process
  # Writes what a workdir needs beside the checkpoints to be used later (the tokenizer).
  save_files: Callable[[str], None] = lambda workdir: None


class Task(abc.ABC):
  """One objective on one model family. Subclasses set the class attributes below."""

  model_config_cls: type  # frozen dataclass with from_config (e.g. GPTConfig)
  param_axes: ParamAxes = PARAM_AXES  # its model's logical axes table (e.g. gpt.PARAM_AXES)
  # Config keys (beyond the model's architecture) a resumed run must share with its checkpoint.
  run_identity: tuple[str, ...] = ("train.seed",)
  num_inputs: int = 1  # token arrays the model's call takes first (encoder-decoder: 2)
  # The data config field with the tokens of one training example (a row of the batch).
  seq_len_field: str = "seq_len"

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.model_config = self.model_config_cls.from_config(config.model)
    self.lora = self._lora()
    self.validate()

  def pretrained_key(self) -> str | None:
    """Where the weights a fine-tuning run starts from sit in its params (e.g. "bert"; "" when
    they are the whole tree, as a prompt->response run's LM); None for a run that trains every
    weight from scratch."""
    return None

  def _lora(self) -> lora_lib.LoRA | None:
    """The adapters `config.lora` asks for (None: rank 0 or no section), set on the model
    config. LoRA trains adapters on frozen pre-trained weights: a run from scratch has none."""
    lora = lora_lib.LoRA.from_config(self.config.get("lora"))
    if lora is None:
      return None
    if self.pretrained_key() is None:
      raise ValueError(
        f"lora.rank={lora.rank}: LoRA trains adapters on frozen pre-trained weights, but this "
        f"{self.config.get('task')!r} run trains from scratch; set lora.rank=0, or use a "
        "fine-tuning task with init.checkpoint and init.load_weights=True"
      )
    if "lora" not in {f.name for f in dataclasses.fields(self.model_config)}:
      raise ValueError(
        f"lora.rank={lora.rank}: {type(self.model_config).__name__} has no attention "
        "projections to adapt; set lora.rank=0"
      )
    self.model_config = self.model_config.replace(lora=lora)
    return lora

  def trainable(self) -> Callable[[Any], Any] | None:
    """params -> a tree of bools, True where the optimizer updates a leaf; None: every leaf.
    With LoRA: the adapters and what the pre-trained checkpoint does not provide (the task's
    new head, as PEFT's modules_to_save); the pre-trained weights stay frozen (Hu et al. 2021,
    §4.1)."""
    if self.lora is None:
      return None
    return functools.partial(lora_lib.trainable, frozen=self.pretrained_key())

  def validate(self) -> None:  # noqa: B027 (optional hook)
    """Task-specific config checks, before any data or compilation; raise ValueError."""

  @property
  def seq_len(self) -> int:
    """Tokens in one training example (a row of the batch): for init shapes, tokens/s, MFU."""
    return self.config.data[self.seq_len_field]

  @abc.abstractmethod
  def prepare_data(self, workdir: str, process_index: int, process_count: int) -> TaskData:
    """Prepares (once, cached) and opens the data; `workdir` may hold a run to resume."""

  @abc.abstractmethod
  def model(self, activation_sharding: Any = None) -> nn.Module:
    """The training model; `activation_sharding` pins activations to the batch split."""

  @abc.abstractmethod
  def loss_fn(self, model: nn.Module) -> LossFn:
    """The loss the step differentiates (see tfjax.training.step)."""

  def init_params(self, rng: jax.Array) -> Any:
    """Fresh parameters: the model's init on rows of zeros (called under jit and
    `jax.eval_shape`)."""
    tokens = jnp.zeros((1, self.seq_len), jnp.int32)
    return self.model().init(rng, *[tokens] * self.num_inputs)["params"]

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

  def train_iterator_args(self, process_index: int, process_count: int) -> dict[str, int]:
    """What every pipeline's `train_iterator` takes beside its data: this process's share of
    train.batch_size, the run's seed, and which process this is."""
    train = self.config.train
    return dict(
      batch_size=train.batch_size // process_count,
      seed=train.seed,
      process_index=process_index,
      process_count=process_count,
    )


def adopt_architecture(
  config: ml_collections.ConfigDict, current: Any, source_config: Any, source: str, keep=()
) -> Any:
  """`current` (a model config) with the architecture of `source_config` (the model a run starts
  from, found at `source`): every field but `keep`, MAY_CHANGE_ON_RESUME (dropout, dtype,
  remat) and `lora` (the run's own adapters, from config.lora) taken from it, so its weights fit
  and compute what they computed; `config.model` is updated to match (the saved config.json
  tells the truth) and a warning lists what changed."""
  kept = {*keep, *MAY_CHANGE_ON_RESUME, "lora"}
  changed = {
    f.name: (getattr(current, f.name), getattr(source_config, f.name))
    for f in dataclasses.fields(current)
    if f.name not in kept and getattr(current, f.name) != getattr(source_config, f.name)
  }
  if not changed:
    return current
  logging.warning(
    "model architecture taken from %s: %s",
    source,
    ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()),
  )
  for name, (_, value) in changed.items():
    config.model[name] = value
  return current.replace(**{name: value for name, (_, value) in changed.items()})


def write_output(workdir: str, name: str, text: str) -> None:
  """Writes `text` to `workdir/name` from process 0 only (every process computes the outputs,
  one writes them)."""
  if jax.process_index() == 0:
    with open(os.path.join(workdir, name), "w") as f:
      f.write(text)
