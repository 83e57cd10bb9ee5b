"""One optimisation step and one evaluation step, for any loss function.

A loss function has the signature `loss_fn(params, batch, dropout_rng, deterministic) ->
(loss, aux)` where `aux` is a dict of scalar metrics. The step differentiates it, applies the
Optax update and returns the new state with the metrics.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from tfjax.training.state import TrainState

LossFn = Callable[[Any, dict, jax.Array | None, bool], tuple[jax.Array, dict]]


def cross_entropy_loss(
  logits: jax.Array, targets: jax.Array, weights: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
  """Mean token cross-entropy in float32 and the number of tokens it averages over.

  logits [..., V], targets [...] int, weights [...] (1 = count, 0 = padding).
  """
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
  if weights is None:
    weights = jnp.ones_like(losses)
  weights = weights.astype(jnp.float32)
  num_tokens = weights.sum()
  return (losses * weights).sum() / jnp.maximum(num_tokens, 1.0), num_tokens


def train_step(
  state: TrainState,
  batch: dict,
  *,
  loss_fn: LossFn,
  optimizer: optax.GradientTransformation,
  schedule: optax.Schedule,
) -> tuple[TrainState, dict]:
  """loss -> grad -> clipped AdamW update. Dropout rng = fold_in(rng, step): resumable."""
  dropout_rng = jax.random.fold_in(state.rng, state.step)
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (loss, aux), grads = grad_fn(state.params, batch, dropout_rng, False)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {
    "loss": loss,
    "grad_norm": optax.tree.norm(grads),
    "learning_rate": schedule(state.step),
    **aux,
  }
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
  return new_state, metrics


def eval_step(params: Any, batch: dict, *, loss_fn: LossFn) -> dict:
  """Loss of one batch with dropout off."""
  loss, aux = loss_fn(params, batch, None, True)
  return {"loss": loss, **aux}
