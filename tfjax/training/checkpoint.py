"""Orbax checkpoints of the train state and the data iterator, restored exactly.

A checkpoint directory holds one folder per saved step with two items: `state` (the TrainState
pytree) and `data` (the grain iterator's position). Only `max_to_keep` rotation deletes a
checkpoint.
"""

import os
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp


def checkpoint_manager(workdir: str, max_to_keep: int) -> ocp.CheckpointManager:
  """An async manager over `<workdir>/checkpoints` keeping the newest `max_to_keep` steps."""
  if max_to_keep < 1:
    raise ValueError(f"train.max_to_keep={max_to_keep} must be >= 1 (the newest checkpoints kept)")
  options = ocp.CheckpointManagerOptions(
    max_to_keep=max_to_keep, create=True, enable_async_checkpointing=True
  )
  return ocp.CheckpointManager(
    os.path.join(os.path.abspath(workdir), "checkpoints"),
    options=options,
    # Named handlers let a fresh manager read the metadata of existing checkpoints.
    item_handlers={
      "state": ocp.StandardCheckpointHandler(),
      "data": grain.checkpoint.CheckpointHandler(),
    },
  )


def save(
  manager: ocp.CheckpointManager, step: int, state: Any, data_iterator: Any | None = None
) -> None:
  """Starts an async save of `state` (and the iterator position) at `step`."""
  items = {"state": ocp.args.StandardSave(state)}
  if data_iterator is not None:
    items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
  manager.save(step, args=ocp.args.Composite(**items))


def restore(
  manager: ocp.CheckpointManager,
  abstract_state: Any,
  data_iterator: Any | None = None,
  step: int | None = None,
) -> Any:
  """Restores the state at `step` (default: the latest) into the structure of `abstract_state`.

  Checks first that the saved parameters fit: a missing, extra or reshaped parameter raises a
  ValueError naming it. `data_iterator` is moved to the saved position in place.
  """
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {manager.directory}")
  check_params_fit(manager, step, abstract_state.params)
  items = {"state": ocp.args.StandardRestore(abstract_state)}
  if data_iterator is not None:
    items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
  return manager.restore(step, args=ocp.args.Composite(**items))["state"]


def restore_params(workdir: str, abstract_params: Any, step: int | None = None) -> Any:
  """Restores only the parameters of a training checkpoint (for sampling or evaluation)."""
  manager = _read_only_manager(workdir)
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint under {workdir}/checkpoints; train first")
  check_params_fit(manager, step, abstract_params)
  restored = manager.restore(
    step,
    args=ocp.args.Composite(
      state=ocp.args.PyTreeRestore(
        item={"params": abstract_params},
        restore_args=ocp.checkpoint_utils.construct_restore_args({"params": abstract_params}),
        partial_restore=True,
      )
    ),
  )
  return restored["state"]["params"]


def average_checkpoints(workdir: str, abstract_params: Any, last: int) -> tuple[Any, list[int]]:
  """The mean of the parameters of the newest `last` checkpoints, and their steps.

  Vaswani et al. 2017, §6.1: "averaging the last 5 checkpoints, which were written at 10-minute
  intervals" (20 for the big models). Sums in float32; the result has the saved dtypes.
  """
  if last < 1:
    raise ValueError(f"average of the last {last} checkpoints: choose 1 or more")
  steps = _read_only_manager(workdir).all_steps()
  if not steps:
    raise FileNotFoundError(f"no checkpoint under {workdir}/checkpoints; train first")
  steps = sorted(steps)[-last:]
  total = None
  for step in steps:
    params = jax.tree.map(
      lambda x: np.asarray(x, np.float32), restore_params(workdir, abstract_params, step)
    )
    total = params if total is None else jax.tree.map(np.add, total, params)
  mean = jax.tree.map(lambda x, a: (x / len(steps)).astype(a.dtype), total, abstract_params)
  return mean, steps


def _read_only_manager(workdir: str) -> ocp.CheckpointManager:
  """A manager that reads a workdir's checkpoints (and never rotates them)."""
  return ocp.CheckpointManager(
    os.path.join(os.path.abspath(workdir), "checkpoints"),
    item_handlers={
      "state": ocp.PyTreeCheckpointHandler(),
      "data": grain.checkpoint.CheckpointHandler(),
    },
  )


def check_params_fit(manager: ocp.CheckpointManager, step: int, abstract_params: Any) -> None:
  """Raises a ValueError naming the first parameter whose name or shape does not fit."""
  saved = manager.item_metadata(step)["state"]
  saved = getattr(saved, "tree", saved)["params"]
  saved_shapes = {_path(p): tuple(m.shape) for p, m in jax.tree.leaves_with_path(saved)}
  wanted_shapes = {_path(p): tuple(a.shape) for p, a in jax.tree.leaves_with_path(abstract_params)}
  where = f"checkpoint step {step} in {manager.directory}"
  fix = "use the config the checkpoint was trained with, or a fresh --workdir"
  for name, shape in wanted_shapes.items():
    if name not in saved_shapes:
      raise ValueError(f"parameter {name} of the model is missing from {where}; {fix}")
    if saved_shapes[name] != shape:
      raise ValueError(
        f"parameter {name} has shape {saved_shapes[name]} in {where} but {shape} in the "
        f"model; {fix}"
      )
  extra = sorted(set(saved_shapes) - set(wanted_shapes))
  if extra:
    raise ValueError(f"parameter {extra[0]} of {where} is not in the model; {fix}")


def _path(key_path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in key_path)
