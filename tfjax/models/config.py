"""What the model configs share: building from a config section, the common checks, and the
parameter count."""

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Self

import flax.linen as nn
import jax
import jax.numpy as jnp

from tfjax.nn.feedforward import ACTIVATIONS
from tfjax.nn.stack import REMAT_POLICIES


class ModelConfig:
  """Mixin of the frozen model-config dataclasses (GPTConfig, BertConfig, ...)."""

  @classmethod
  def from_config(cls, config: Mapping[str, Any]) -> Self:
    """Builds from a ConfigDict section; an unknown key is an error, not ignored."""
    config = dict(config)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - known)
    if unknown:
      raise ValueError(f"unknown model config keys {unknown}; known keys: {sorted(known)}")
    return cls(**config)

  def replace(self, **changes: Any) -> Self:
    return dataclasses.replace(self, **changes)

  def check(self, *positive: str) -> None:
    """The checks every transformer config needs; `positive` names the sizes that must be > 0."""
    for name in positive:
      if getattr(self, name) <= 0:
        raise ValueError(f"model.{name}={getattr(self, name)} must be positive")
    if self.d_model % self.num_heads:
      raise ValueError(
        f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}; "
        "choose d_model as a multiple of num_heads"
      )
    if self.activation not in ACTIVATIONS:
      raise ValueError(
        f"model.activation={self.activation!r} is unknown; choose one of {sorted(ACTIVATIONS)}"
      )
    for name in ("dropout_rate", "attention_dropout_rate"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(f"model.{name}={getattr(self, name)} must be in [0, 1)")
    check_dtype(self.dtype)
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(
        f"model.remat_policy={self.remat_policy!r} is unknown; choose one of "
        f"{sorted(REMAT_POLICIES)} ('none': keep all activations, 'full': recompute each layer)"
      )


def check_dtype(name: str) -> None:
  """A one-line ValueError for a `model.dtype` that names no dtype (jnp.dtype raises TypeError)."""
  try:
    jnp.dtype(name)
  except TypeError as e:
    raise ValueError(f"model.dtype={name!r} is not a dtype; use 'float32' or 'bfloat16'") from e


def count_params(model: nn.Module, *inputs: tuple[int, ...] | jax.ShapeDtypeStruct) -> int:
  """Number of parameters of `model` initialised on `inputs` (a shape: int32 token ids), from
  shapes alone (`jax.eval_shape`: nothing is allocated), e.g. `count_params(GPT(cfg), (1, 1))`."""
  inputs = [
    x if isinstance(x, jax.ShapeDtypeStruct) else jax.ShapeDtypeStruct(x, jnp.int32) for x in inputs
  ]
  shapes = jax.eval_shape(model.init, jax.random.key(0), *inputs)
  return sum(math.prod(p.shape) for p in jax.tree.leaves(shapes["params"]))
