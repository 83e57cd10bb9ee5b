"""What the model configs share: building from a config section, the common checks, and the
activation rematerialisation and sharding of each layer."""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Self

import jax
import jax.numpy as jnp

from tfjax.nn.feedforward import ACTIVATIONS

# Activation rematerialisation of each layer (`model.remat_policy`): which intermediate values of
# the forward pass are kept for the backward pass; the others are recomputed (Chen et al. 2016).
# None: no rematerialisation at all, every intermediate is kept. Measured on XLA:CPU (jax 0.10):
# remat lowers peak memory only with scan_layers=True (GPT, 12 layers, d=256, batch 16x128,
# train-step temp memory: "full" 220 MiB, "none" 1171 MiB); in the unrolled loop the CPU
# scheduler runs the recomputation early and the peak does not move (1065 MiB for every policy).
REMAT_POLICIES: dict[str, Callable[..., bool] | None] = {
  "none": None,
  "full": jax.checkpoint_policies.nothing_saveable,  # keep only each layer's input
  "dots": jax.checkpoint_policies.checkpoint_dots,  # keep matmul outputs, recompute the rest
  # keep the projections' outputs, recompute attention's batched einsums (the [b,h,q,k] logits)
  "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


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
    jnp.dtype(self.dtype)  # raises on an unknown dtype name
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(
        f"model.remat_policy={self.remat_policy!r} is unknown; choose one of "
        f"{sorted(REMAT_POLICIES)} ('none': keep all activations, 'full': recompute each layer)"
      )


def constrain(sharding: Any, x: jax.Array) -> jax.Array:
  """Pins activations `x` to `sharding` (the batch split); None: no constraint."""
  return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)
