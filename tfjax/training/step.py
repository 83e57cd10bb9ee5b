"""One optimisation step and one evaluation step, for any loss function.

A loss function has the signature `loss_fn(params, batch, dropout_rng, deterministic) ->
(loss, aux)` where `loss` is a mean over the batch's tokens and `aux` a dict of scalar metrics
with the number of tokens averaged over under "num_tokens". The step differentiates it, applies
the Optax update and returns the new state with the metrics.
"""

import numbers
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

  logits [..., V], targets [...] int, weights [...] (1 = count, 0 = padding). The logits are
  cast to float32 before the log-softmax, so bfloat16 compute never reaches the loss.
  """
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
  if weights is None:
    weights = jnp.ones_like(losses)
  weights = weights.astype(jnp.float32)
  num_tokens = weights.sum()
  return (losses * weights).sum() / jnp.maximum(num_tokens, 1.0), num_tokens


def accuracy(logits: jax.Array, labels: jax.Array, weights: jax.Array | None = None) -> jax.Array:
  """Weighted fraction of argmax predictions equal to `labels`."""
  correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
  weights = jnp.ones_like(correct) if weights is None else weights.astype(jnp.float32)
  return (correct * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def without_frozen_gradients(loss_fn: LossFn, trainable: Callable[[Any], Any]) -> LossFn:
  """`loss_fn` with `stop_gradient` on the leaves `trainable(params)` marks False (LoRA's frozen
  base): their gradients are constant zeros, so XLA computes no weight gradient for them, and
  the step's grad_norm is that of the trained leaves (what clipping sees)."""

  def wrapped(params: Any, batch: dict, dropout_rng: jax.Array | None, deterministic: bool):
    stop = lambda p, t: p if t else jax.lax.stop_gradient(p)
    return loss_fn(jax.tree.map(stop, params, trainable(params)), batch, dropout_rng, deterministic)

  return wrapped


def dropout_rngs(dropout_rng: jax.Array | None, deterministic: bool) -> dict:
  """The `rngs` of a loss function's `model.apply`: none when dropout is off."""
  return {} if deterministic else {"dropout": dropout_rng}


# ------------------------------------------------------------------------------ micro-batches


def check_grad_accum_steps(batch_size: int, grad_accum_steps: int) -> int:
  """The micro-batch size; a clear error when `batch_size` rows do not split evenly.

  Call it with the batch one step sees (per device under `shard_map`/`pmap`) before compiling.
  """
  k = grad_accum_steps
  if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
    raise ValueError(
      f"grad_accum_steps={k!r} must be an integer >= 1 (1: no accumulation); "
      "set train.grad_accum_steps to a whole number"
    )
  if batch_size % k:
    raise ValueError(
      f"the batch of {batch_size} rows is not divisible by grad_accum_steps={k}; choose a "
      f"batch size that is a multiple of {k} (e.g. {batch_size - batch_size % k or k}) or a "
      f"grad_accum_steps that divides {batch_size}"
    )
  return batch_size // int(k)


def micro_batches(batch: dict, grad_accum_steps: int) -> dict:
  """Every leaf [B, ...] -> [k, B/k, ...]; micro-batch i holds rows i, i + k, i + 2k, ...

  Strided rather than contiguous: when the batch is sharded over devices in contiguous blocks
  (and each block divides by k), every micro-batch takes rows from every device's own block,
  so splitting moves no data between devices.
  """
  leaves = jax.tree.leaves(batch)
  sizes = {x.shape[0] if x.ndim else None for x in leaves}
  if len(sizes) != 1 or None in sizes:
    raise ValueError(
      f"every batch leaf needs the same leading batch axis to split into micro-batches; got "
      f"leading sizes {sorted(str(s) for s in sizes)}"
    )
  (batch_size,) = sizes
  check_grad_accum_steps(batch_size, grad_accum_steps)
  k = int(grad_accum_steps)
  split = lambda x: jnp.swapaxes(x.reshape(batch_size // k, k, *x.shape[1:]), 0, 1)
  return jax.tree.map(split, batch)


def _accumulated_grads(
  loss_fn: LossFn, params: Any, batch: dict, dropout_rng: jax.Array, k: int
) -> tuple[jax.Array, dict, Any]:
  """(mean loss, aux, grads) of the whole batch from k micro-batches, one `lax.scan` step each.

  Each micro-batch contributes its token sum of losses (loss * num_tokens) and the gradient of
  that sum; dividing by the total token count at the end gives the big batch's token mean, also
  when micro-batches hold different numbers of valid tokens (exact for 0/1 weights).
  """

  def summed_loss(params: Any, micro: dict, rng: jax.Array) -> tuple[jax.Array, dict]:
    loss, aux = loss_fn(params, micro, rng, False)
    if "num_tokens" not in aux:
      raise ValueError(
        f"grad_accum_steps={k} weights micro-batches by their token counts, but the loss "
        f"function's aux has only {sorted(aux)}; return aux['num_tokens'] (the count the mean "
        "loss divides by), as cross_entropy_loss does"
      )
    num_tokens = jax.lax.stop_gradient(aux["num_tokens"]).astype(jnp.float32)
    return loss * num_tokens, aux

  grad_fn = jax.value_and_grad(summed_loss, has_aux=True)
  # Sum gradients in at least float32, whatever the parameters' dtype.
  acc_dtype = lambda p: jnp.promote_types(p.dtype, jnp.float32)
  zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, acc_dtype(p)), params)

  def body(grads_sum: Any, xs: tuple[jax.Array, dict]) -> tuple[Any, tuple[jax.Array, dict]]:
    index, micro = xs
    (loss_sum, aux), grads = grad_fn(params, micro, jax.random.fold_in(dropout_rng, index))
    grads_sum = jax.tree.map(lambda s, g: s + g.astype(s.dtype), grads_sum, grads)
    return grads_sum, (loss_sum, aux)

  micro = micro_batches(batch, k)  # checks k first
  xs = (jnp.arange(int(k)), micro)
  grads_sum, (loss_sums, auxes) = jax.lax.scan(body, zeros, xs)  # loss_sums, auxes: [k]
  tokens = auxes["num_tokens"].astype(jnp.float32)
  total = jnp.maximum(tokens.sum(), 1.0)
  grads = jax.tree.map(lambda s, p: (s / total).astype(p.dtype), grads_sum, params)
  # Other metrics are token means, like the loss: weight them the same way.
  aux = {
    name: (v.astype(jnp.float32) * tokens).sum() / total
    for name, v in auxes.items()
    if name != "num_tokens"
  }
  aux["num_tokens"] = auxes["num_tokens"].sum()
  return loss_sums.sum() / total, aux, grads


# ------------------------------------------------------------------------------ steps


def train_step(
  state: TrainState,
  batch: dict,
  *,
  loss_fn: LossFn,
  optimizer: optax.GradientTransformation,
  schedule: optax.Schedule,
  grad_accum_steps: int = 1,
  axis_name: str | tuple[str, ...] | None = None,
) -> tuple[TrainState, dict]:
  """loss -> grad -> one optimizer update on the whole `batch`; metrics of that batch.

  `axis_name` (inside `shard_map` / `pmap`): `batch` is this device's shard; the token-weighted
  loss and gradients are summed over the axis, so every device applies the update of the whole
  global batch (the same as one device would), and each device draws its own dropout masks.

  `grad_accum_steps=k > 1` computes the same update from k micro-batches of B/k rows, scanned
  one after another so that only one micro-batch's activations are live: the data iterator
  still yields the whole batch and one step is still one update (the schedule counts steps).
  Loss and gradients are token-weighted as in `_accumulated_grads`, so they equal the big
  batch's up to float rounding. `k` must be static (bind it with functools.partial).

  Dropout rng: fold_in(rng, step), and for micro-batch i fold_in(fold_in(rng, step), i) —
  resumable, and a fresh mask for each micro-batch. With dropout an accumulated step thus draws
  other masks than the big-batch step (same distribution, other bits); without dropout the two
  are equal up to float rounding (the order of the sums).
  """
  dropout_rng = jax.random.fold_in(state.rng, state.step)
  if axis_name is not None:
    dropout_rng = jax.random.fold_in(dropout_rng, jax.lax.axis_index(axis_name))
  if grad_accum_steps == 1:
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, aux), grads = grad_fn(state.params, batch, dropout_rng, False)
  else:
    loss, aux, grads = _accumulated_grads(
      loss_fn, state.params, batch, dropout_rng, grad_accum_steps
    )
  if axis_name is not None:
    loss, aux, grads = sum_over_devices(loss, aux, grads, axis_name)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {
    "loss": loss,
    "grad_norm": optax.tree.norm(grads),
    "learning_rate": schedule(state.step),
    **aux,
  }
  if isinstance(opt_state, optax.ApplyIfFiniteState):  # what it skipped (the run's counts)
    metrics["skipped_updates"] = opt_state.total_notfinite
    metrics["skipped_in_a_row"] = opt_state.notfinite_count
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
  return new_state, metrics


def sum_over_devices(
  loss: jax.Array, aux: dict, grads: Any, axis_name: str | tuple[str, ...]
) -> tuple[jax.Array, dict, Any]:
  """Per-device token means -> global token means: weight by tokens, `psum`, divide.

  With `check_vma=False` (or `pmap`) the gradient of a device's own loss is that device's
  alone, so the explicit sum is right. (With shard_map's default `check_vma=True`, the gradient
  with respect to replicated params comes already summed over devices, and this sum would count
  it once per device.)
  """
  if "num_tokens" not in aux:
    raise ValueError("data-parallel steps weight devices by aux['num_tokens']; return it")
  total = jax.lax.psum(aux["num_tokens"], axis_name)
  share = aux["num_tokens"].astype(jnp.float32) / jnp.maximum(total, 1.0)
  reduce = lambda x: jax.lax.psum(x * share.astype(x.dtype), axis_name)
  aux = {k: reduce(v) for k, v in aux.items() if k != "num_tokens"}
  aux["num_tokens"] = total
  return reduce(loss), aux, jax.tree.map(reduce, grads)


def eval_step(params: Any, batch: dict, *, loss_fn: LossFn) -> dict:
  """Loss of one batch with dropout off."""
  loss, aux = loss_fn(params, batch, None, True)
  return {"loss": loss, **aux}
