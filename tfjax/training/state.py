"""The train state: everything a step reads and writes, as one pytree Orbax can save."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


class TrainState(flax.struct.PyTreeNode):
  """step, params, optimizer state and the base rng (dropout rng = fold_in(rng, step))."""

  step: jax.Array  # int32 scalar
  params: Any
  opt_state: optax.OptState
  rng: jax.Array  # raw uint32[2] key, so checkpoints hold a plain array

  @classmethod
  def create(cls, params: Any, optimizer: optax.GradientTransformation, rng: jax.Array):
    return cls(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=optimizer.init(params),
      rng=rng,
    )
