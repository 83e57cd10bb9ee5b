"""Optax optimizers and learning-rate schedules for the transformer recipes.

Steps count optimizer *updates*, as the papers do ("warmup over 2,000 updates"). A schedule is
called with optax's update count, which is 0 for the first update. Gradient accumulation lives
in the train step (`step.train_step(..., grad_accum_steps=k)`), which sums micro-batch gradients
before its one `update` call: the optimizer and its schedule see one update per step either way.
"""

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

SCHEDULES = ("warmup_cosine", "inverse_sqrt", "linear")
NO_DECAY_NAMES = ("bias", "scale")  # flax names of biases and LayerNorm gains


# ------------------------------------------------------------------------------ schedules


def _check_warmup(peak_lr: float, warmup_steps: int, total_steps: int) -> None:
  if peak_lr <= 0:
    raise ValueError(f"learning_rate={peak_lr} must be positive; set train.learning_rate > 0")
  if total_steps <= 0:
    raise ValueError(f"num_steps={total_steps} must be positive; set train.num_steps >= 1")
  if warmup_steps < 0:
    raise ValueError(f"warmup_steps={warmup_steps} is negative; set train.warmup_steps >= 0")
  if warmup_steps >= total_steps:
    raise ValueError(
      f"warmup_steps={warmup_steps} must be smaller than num_steps={total_steps}, or the "
      "decay never starts; lower train.warmup_steps or raise train.num_steps"
    )


def warmup_cosine_schedule(peak_lr: float, warmup_steps: int, total_steps: int) -> optax.Schedule:
  """Linear warmup from 0 to `peak_lr`, then cosine annealing to 0 at `total_steps`.

  GPT-1 (Radford et al. 2018, §4.1): "increased linearly from zero over the first 2000 updates
  and annealed to 0 using a cosine schedule".
  """
  _check_warmup(peak_lr, warmup_steps, total_steps)
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0,
    peak_value=peak_lr,
    warmup_steps=warmup_steps,
    decay_steps=total_steps,  # optax counts the warmup inside decay_steps
    end_value=0.0,
  )


def linear_warmup_linear_decay(
  peak_lr: float, warmup_steps: int, total_steps: int
) -> optax.Schedule:
  """Linear warmup from 0 to `peak_lr`, then linear decay to 0 at `total_steps`.

  BERT (Devlin et al. 2018, Appendix A.2): "learning rate warmup over the first 10,000 steps,
  and linear decay of the learning rate".
  """
  _check_warmup(peak_lr, warmup_steps, total_steps)
  decay = optax.linear_schedule(peak_lr, 0.0, transition_steps=total_steps - warmup_steps)
  if warmup_steps == 0:
    return decay
  warmup = optax.linear_schedule(0.0, peak_lr, transition_steps=warmup_steps)
  return optax.join_schedules([warmup, decay], boundaries=[warmup_steps])


def inverse_sqrt_schedule(d_model: int, warmup_steps: int, scale: float = 1.0) -> optax.Schedule:
  """The Transformer's schedule: scale * d^-0.5 * min(n^-0.5, n * warmup^-1.5).

  Vaswani et al. 2017, §5.3, Eq. 3, where n = step_num counts from 1. Optax calls a schedule
  with the number of updates already applied (0 for the first), so n = step + 1: the first
  update gets the paper's step-1 rate and the schedule has no 0^-0.5 at step 0. It peaks at
  n = warmup_steps. `scale` multiplies the whole rate (1.0 is the paper).
  """
  if d_model <= 0:
    raise ValueError(f"d_model={d_model} must be positive")
  if warmup_steps <= 0:
    raise ValueError(
      f"warmup_steps={warmup_steps} must be positive for the inverse-sqrt schedule "
      "(the paper uses 4000); set train.warmup_steps >= 1"
    )
  if scale <= 0:
    raise ValueError(f"learning_rate={scale} (the schedule's scale) must be positive")

  def schedule(step: jax.typing.ArrayLike) -> jax.Array:
    n = jnp.asarray(step, jnp.float32) + 1.0
    return scale * d_model**-0.5 * jnp.minimum(n**-0.5, n * warmup_steps**-1.5)

  return schedule


def make_schedule(train_config: Mapping[str, Any], d_model: int | None = None) -> optax.Schedule:
  """Builds `train_config.schedule` ("warmup_cosine" by default, "linear", "inverse_sqrt").

  For "inverse_sqrt", `learning_rate` is a multiplier on Eq. 3 (1.0 reproduces the paper) and
  `d_model` comes from the argument or `train_config.d_model`.
  """
  name = train_config.get("schedule", "warmup_cosine")
  lr = float(train_config["learning_rate"])
  warmup = _as_int(train_config.get("warmup_steps", 0), "warmup_steps")
  if name == "warmup_cosine":
    return warmup_cosine_schedule(lr, warmup, _as_int(train_config["num_steps"], "num_steps"))
  if name == "linear":
    return linear_warmup_linear_decay(lr, warmup, _as_int(train_config["num_steps"], "num_steps"))
  if name == "inverse_sqrt":
    d_model = d_model if d_model is not None else train_config.get("d_model")
    if d_model is None:
      raise ValueError(
        "schedule='inverse_sqrt' needs d_model; pass make_schedule(..., d_model=...) "
        "or set train.d_model"
      )
    return inverse_sqrt_schedule(int(d_model), warmup, scale=lr)
  raise ValueError(f"schedule={name!r} is unknown; choose one of {SCHEDULES}")


# ------------------------------------------------------------------------------ optimizer


def _param_name(path: tuple[Any, ...]) -> str | None:
  """The last dict key on a leaf's path: the flax parameter name ('kernel', 'bias', ...)."""
  names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
  return str(names[-1]) if names else None


def decay_mask(params: Any) -> Any:
  """True for weight matrices and embeddings, False for biases and LayerNorm gains.

  GPT-1 (Radford et al. 2018, §4.1): "L2 regularization ... w = 0.01 on all non bias or gain
  weights". A leaf is decayed when ndim >= 2 and its flax name is not 'bias' or 'scale': the
  name matters because a multi-head `DenseGeneral` bias is 2-D ([heads, d_k]). Works on
  arrays, `jax.ShapeDtypeStruct` leaves and boxed (`nn.Partitioned`) params.
  """

  def decayed(path: tuple[Any, ...], x: Any) -> bool:
    ndim = x.ndim if hasattr(x, "ndim") else np.ndim(x)
    return ndim >= 2 and _param_name(path) not in NO_DECAY_NAMES

  return jax.tree_util.tree_map_with_path(decayed, params)


def make_optimizer(
  train_config: Mapping[str, Any],
  d_model: int | None = None,
  *,
  trainable: Callable[[Any], Any] | None = None,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Global-norm clipping, then AdamW with decoupled decay on matrices only, on a schedule;
  with `on_nonfinite="skip"`, updates with non-finite gradients are skipped (`skip_nonfinite`).

  Reads `learning_rate`, `warmup_steps`, `num_steps`, `b1`, `b2`, `eps`, `weight_decay`,
  `grad_clip_norm` (0 or None: no clipping), `schedule` and `on_nonfinite`; clipping sees the
  whole batch's gradient, accumulated or not. Returns the transformation and the schedule
  (indexed by optimizer updates, for logging the rate).

  `trainable` (params -> a tree of bools; None: every parameter trains) freezes the leaves it
  marks False: they get zero updates and no optimizer state (`optax.multi_transform` with
  `optax.set_to_zero`), and clipping and weight decay see only the trainable leaves — LoRA's
  frozen base (Hu et al. 2021, §4.1).
  """
  schedule = make_schedule(train_config, d_model=d_model)
  b1 = float(train_config.get("b1", 0.9))
  b2 = float(train_config.get("b2", 0.999))
  eps = float(train_config.get("eps", 1e-8))
  weight_decay = float(train_config.get("weight_decay", 0.0))
  clip = train_config.get("grad_clip_norm", None)

  for field, value in (("b1", b1), ("b2", b2)):
    if not 0.0 <= value < 1.0:
      raise ValueError(f"{field}={value} must be in [0, 1); Adam's usual values are 0.9 / 0.999")
  if eps < 0:
    raise ValueError(f"eps={eps} is negative; set train.eps >= 0 (e.g. 1e-8)")
  if weight_decay < 0:
    raise ValueError(f"weight_decay={weight_decay} is negative; set train.weight_decay >= 0")
  if clip is not None and float(clip) < 0:
    raise ValueError(f"grad_clip_norm={clip} is negative; use a positive norm, or 0 to disable")

  adamw = optax.adamw(
    learning_rate=schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=decay_mask
  )
  # The same state layout with or without clipping, so toggling it does not break a resume.
  clipping = optax.clip_by_global_norm(float(clip)) if clip else optax.identity()
  tx = optax.chain(clipping, adamw)
  if trainable is not None:
    tx = freeze(tx, trainable)
  if train_config.get("on_nonfinite", "stop") == "skip":
    tx = skip_nonfinite(tx)
  return tx, schedule


TRAINABLE, FROZEN = "trainable", "frozen"  # the labels of `freeze`'s two partitions


def freeze(
  inner: optax.GradientTransformation, trainable: Callable[[Any], Any]
) -> optax.GradientTransformation:
  """`inner` on the leaves `trainable(params)` marks True; zero updates and no state for the
  others (their moments are never allocated: optax masks them out of `inner`'s state)."""

  def labels(params: Any) -> Any:
    return jax.tree.map(lambda t: TRAINABLE if t else FROZEN, trainable(params))

  return optax.multi_transform({TRAINABLE: inner, FROZEN: optax.set_to_zero()}, labels)


def skip_nonfinite(inner: optax.GradientTransformation) -> optax.GradientTransformation:
  """`inner`, except that an update whose gradients hold a NaN or inf changes nothing (no
  parameter, no moment, no schedule count) and is counted in the state (`optax.apply_if_finite`).

  Never gives up and applies one: the trainer stops the run instead, after the number of skips
  in a row that `train.max_consecutive_nonfinite` allows. (With `train.on_nonfinite="stop"` the
  optimizer is not wrapped: the run stops at the first non-finite step before saving anything,
  and compiles and steps as fast as without a check; checkpoints convert between the two.)
  """
  return optax.apply_if_finite(inner, max_consecutive_errors=np.iinfo(np.int32).max)


def _as_int(value: Any, field: str) -> int:
  try:
    ok = not isinstance(value, bool) and int(value) == value
  except (TypeError, ValueError):
    ok = False
  if not ok:
    raise ValueError(f"{field}={value!r} must be an integer; set train.{field} to a whole number")
  return int(value)
