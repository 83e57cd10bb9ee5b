"""The optimizer state's two layouts in checkpoints: a run with train.on_nonfinite="skip" wraps
its optimizer in `optax.apply_if_finite` (`optimizer.skip_nonfinite`), "stop" does not. Either
resumes the other's checkpoints: the wrapper's counts are added (no skips yet) or dropped.
"""

from typing import Any

import jax
import numpy as np
import optax

_SKIP_COUNTS = "opt_state/notfinite_count"


def as_saved(abstract_state: Any, saved_paths: set[str]) -> Any:
  """`abstract_state` in the layout of the checkpoint: with or without the skip counts."""
  opt_state = getattr(abstract_state, "opt_state", None)
  if opt_state is None:
    return abstract_state
  wrapped = isinstance(opt_state, optax.ApplyIfFiniteState)
  saved_wrapped = _SKIP_COUNTS in saved_paths
  if wrapped and not saved_wrapped:
    return abstract_state.replace(opt_state=opt_state.inner_state)
  if saved_wrapped and not wrapped:
    return abstract_state.replace(opt_state=_with_no_skips(abstract_state.step, opt_state))
  return abstract_state


def as_wanted(state: Any, abstract_state: Any) -> Any:
  """A restored `state` in the layout `abstract_state` asks for (see `as_saved`)."""
  opt_state = getattr(abstract_state, "opt_state", None)
  if opt_state is None:
    return state
  wrapped = isinstance(opt_state, optax.ApplyIfFiniteState)
  if wrapped and not isinstance(state.opt_state, optax.ApplyIfFiniteState):
    return state.replace(opt_state=_with_no_skips(state.step, state.opt_state))
  if isinstance(state.opt_state, optax.ApplyIfFiniteState) and not wrapped:
    return state.replace(opt_state=state.opt_state.inner_state)
  return state


def _with_no_skips(like: Any, inner: Any) -> optax.ApplyIfFiniteState:
  """`inner` wrapped as `optax.apply_if_finite` is before any skipped update; the counts are
  placed like the scalar `like` (the step: replicated), arrays or abstract shapes alike."""
  sharding = getattr(like, "sharding", None)

  def scalar(value: Any, dtype: Any) -> Any:
    if isinstance(like, jax.ShapeDtypeStruct):
      return jax.ShapeDtypeStruct((), dtype, sharding=sharding)
    return jax.device_put(np.asarray(value, dtype), sharding)

  return optax.ApplyIfFiniteState(
    notfinite_count=scalar(0, np.int32),
    last_finite=scalar(True, np.bool_),
    total_notfinite=scalar(0, np.int32),
    inner_state=inner,
  )
