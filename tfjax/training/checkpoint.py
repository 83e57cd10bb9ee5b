"""Orbax checkpoints of the train state and the data iterator, restored exactly, never lost.

A checkpoint directory holds one folder per saved step with two items: `state` (the TrainState
pytree) and `data` (the grain iterator's position). Orbax writes each into a temporary folder and
renames it when complete, so a killed run never leaves a partial step behind. Only `max_to_keep`
rotation deletes a checkpoint: one that cannot be read is renamed aside (`<step>.unreadable`) and
the newest readable one is used instead; a save that fails (a full disk) stops the run with the
earlier checkpoints intact.
"""

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from tfjax.training import skip_layout
from tfjax.training.faults import RunStopped
from tfjax.training.orbax_echoes import orbax_echoes_to_debug

UNREADABLE = ".unreadable"  # suffix of a step folder set aside because it cannot be read


class CheckpointMismatch(ValueError):
  """The checkpoint is readable but holds another model than the config describes."""


def checkpoint_manager(workdir: str, max_to_keep: int) -> ocp.CheckpointManager:
  """An async manager over `<workdir>/checkpoints` keeping the newest `max_to_keep` steps."""
  if max_to_keep < 1:
    raise ValueError(f"train.max_to_keep={max_to_keep} must be >= 1 (the newest checkpoints kept)")
  options = ocp.CheckpointManagerOptions(
    max_to_keep=max_to_keep,
    create=True,
    enable_async_checkpointing=True,
    cleanup_tmp_directories=True,  # the partial writes of a killed run or a full disk
  )
  return ocp.CheckpointManager(
    _directory(workdir),
    options=options,
    # Named handlers let a fresh manager read the metadata of existing checkpoints.
    item_handlers={
      "state": ocp.StandardCheckpointHandler(),
      "data": grain.checkpoint.CheckpointHandler(),
    },
  )


# ------------------------------------------------------------------------------------- saving


def save(
  manager: ocp.CheckpointManager, step: int, state: Any, data_iterator: Any | None = None
) -> None:
  """Starts an async save of `state` (and the iterator position) at `step`.

  A previous save that failed to write (e.g. a full disk) raises `RunStopped` here.
  """
  items = {"state": ocp.args.StandardSave(state)}
  if data_iterator is not None:
    items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
  with _write_errors_stop_the_run(manager, state):
    manager.save(step, args=ocp.args.Composite(**items))


def wait_until_finished(manager: ocp.CheckpointManager, state: Any = None) -> None:
  """Waits for the save in flight; a failed write raises `RunStopped` (see `save`)."""
  with _write_errors_stop_the_run(manager, state):
    manager.wait_until_finished()


@contextlib.contextmanager
def _write_errors_stop_the_run(manager: ocp.CheckpointManager, state: Any) -> Iterator[None]:
  """An OS error while writing (no space, a read-only or vanished disk) -> one line naming the
  folder, its free space and what a checkpoint takes; the finished checkpoints stay as they are.
  Its errors come from a background thread: run the loop under `orbax_echoes_to_debug()`.
  """
  try:
    yield
  except Exception as e:
    reason = _os_error(e)
    if reason is None:
      raise
    directory = str(manager.directory)
    free = shutil.disk_usage(directory).free if os.path.isdir(directory) else 0
    size = _checkpoint_bytes(manager, state)
    latest = manager.latest_step()
    resume = (
      f"checkpoint {latest} is the newest intact one" if latest is not None else "nothing saved"
    )
    raise RunStopped(
      f"could not write a checkpoint to {directory}: "
      f"{reason}; {_megabytes(free)} free there and a checkpoint takes about {_megabytes(size)}: "
      f"free space (or lower train.max_to_keep) and run the same command again ({resume})"
    ) from e


def _os_error(error: BaseException) -> str | None:
  """The operating system's reason in `error` or its causes (tensorstore reports ENOSPC as a
  ValueError with "[os_error_code=...]"); None for an error that is not the disk's."""
  seen = error
  while seen is not None:
    if isinstance(seen, OSError):
      return seen.strerror or str(seen)
    text = str(seen)
    if "os_error_code" in text:
      return text.split(": ")[-1].split(" [os_error_code")[0]
    seen = seen.__cause__ or seen.__context__
  return None


def _checkpoint_bytes(manager: ocp.CheckpointManager, state: Any) -> int:
  """The size of the newest finished checkpoint on disk, or else of `state`'s arrays."""
  latest = manager.latest_step()
  if latest is not None:
    folder = os.path.join(str(manager.directory), str(latest))
    return sum(
      os.path.getsize(os.path.join(root, name))
      for root, _, names in os.walk(folder)
      for name in names
    )
  return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(state))


def _megabytes(num_bytes: int) -> str:
  return f"{num_bytes / 1e6:.1f} MB"


# ------------------------------------------------------------------------------------ restoring


def restore(
  manager: ocp.CheckpointManager,
  abstract_state: Any,
  data_iterator: Any | None = None,
  step: int | None = None,
) -> Any:
  """Restores the state at `step` (default: the latest) into the structure of `abstract_state`.

  Checks first that the saved parameters fit: a missing, extra or reshaped parameter raises a
  `CheckpointMismatch` naming it. `data_iterator` is moved to the saved position in place.
  """
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {manager.directory}")
  check_params_fit(manager, step, abstract_state.params)
  saved_paths = set(_shapes(_saved_tree(manager, step)))
  target = skip_layout.as_saved(abstract_state, saved_paths)
  missing = sorted(set(_shapes(target)) - saved_paths) + sorted(saved_paths - set(_shapes(target)))
  if missing:
    raise CheckpointMismatch(
      f"checkpoint step {step} in {manager.directory} has another state layout ({missing[0]} is "
      "in one of them only: another optimizer?); use the config it was trained with, or a "
      "fresh --workdir"
    )
  items = {"state": ocp.args.StandardRestore(target)}
  if data_iterator is not None:
    items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
  state = manager.restore(step, args=ocp.args.Composite(**items))["state"]
  return skip_layout.as_wanted(state, abstract_state)


def restore_newest_readable(
  manager: ocp.CheckpointManager, abstract_state: Any, data_iterator: Any | None = None
) -> Any:
  """The state of the newest checkpoint that can be read (see `restore`).

  One that cannot (a truncated or missing file, bad metadata, data that does not fit its
  shape) is renamed to `<step>.unreadable`, with a one-line warning, and the next older one is
  tried; `RunStopped` when none can be read. A `CheckpointMismatch` (another model: a config
  error, not a damaged file) is raised as it is, and nothing is renamed.
  """
  for step in sorted(manager.all_steps(), reverse=True):
    state, reason = _try_restore(lambda s=step: restore(manager, abstract_state, data_iterator, s))
    if reason is None:
      return state
    aside = _set_aside(manager, step)
    logging.warning(
      "checkpoint %d in %s cannot be read (%s); renamed it to %s and trying the one before",
      step,
      manager.directory,
      reason,
      os.path.basename(aside),
    )
  raise RunStopped(
    f"no checkpoint in {manager.directory} can be read ({', '.join(set_aside(manager))}): "
    "restore one from a backup under its step number, or move them away to start afresh"
  )


def set_aside(manager: ocp.CheckpointManager) -> list[str]:
  """The step folders renamed aside as unreadable, newest first."""
  directory = str(manager.directory)
  names = os.listdir(directory) if os.path.isdir(directory) else []
  aside = [n for n in names if UNREADABLE in n and n.split(".")[0].isdigit()]
  return sorted(aside, key=lambda n: int(n.split(".")[0]), reverse=True)


def _try_restore(restore_fn) -> tuple[Any, str | None]:
  """(restored, None), or (None, the library's reason in a few words) if it cannot be read.

  Every process tries; a step counts as readable only if it is on all of them, so that all
  resume from the same one.
  """
  try:
    with orbax_echoes_to_debug():
      restored, reason = restore_fn(), None
  except CheckpointMismatch:
    raise
  except Exception as e:  # whatever the storage layer raises: the file is what is wrong
    logging.debug("checkpoint restore failed", exc_info=True)
    restored, reason = None, _short_reason(e)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    oks = multihost_utils.process_allgather(np.array(reason is None))
    if reason is None and not np.all(oks):
      restored, reason = None, "unreadable on another process"
  return restored, reason


def _short_reason(error: BaseException) -> str:
  """The innermost cause's first line, cut to a readable length."""
  while error.__cause__ is not None:
    error = error.__cause__
  text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  return text if len(text) <= 240 else text[:237] + "..."


def _set_aside(manager: ocp.CheckpointManager, step: int) -> str:
  """Renames the folder of `step` to `<step>.unreadable` (`.unreadable.1`, ... if taken)."""
  folder = os.path.join(str(manager.directory), str(step))
  aside, n = folder + UNREADABLE, 0
  while os.path.exists(aside):
    n += 1
    aside = f"{folder}{UNREADABLE}.{n}"
  if jax.process_index() == 0:
    os.rename(folder, aside)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(f"tfjax checkpoint {step} set aside")
  manager.reload()
  return aside


def restore_params(workdir: str, abstract_params: Any, step: int | None = None) -> Any:
  """Restores only the parameters of a training checkpoint (for sampling or evaluation).

  Without `step`, the newest readable checkpoint: an unreadable one is skipped with a warning
  and left where it is (reading never changes a workdir).
  """
  manager = _read_only_manager(workdir)
  steps = sorted(manager.all_steps(), reverse=True) if step is None else [step]
  if not steps:
    raise FileNotFoundError(f"no checkpoint under {workdir}/checkpoints; train first")
  reasons = []
  for candidate in steps:
    params, reason = _try_restore(lambda s=candidate: _restore_params(manager, abstract_params, s))
    if reason is None:
      return params
    reasons.append(f"{candidate}: {reason}")
    logging.warning("checkpoint %d in %s cannot be read (%s)", candidate, workdir, reason)
  raise FileNotFoundError(
    f"no checkpoint under {workdir}/checkpoints can be read ({'; '.join(reasons)})"
  )


def _restore_params(manager: ocp.CheckpointManager, abstract_params: Any, step: int) -> Any:
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
  """The mean of the parameters of the newest `last` readable checkpoints, and their steps.

  Vaswani et al. 2017, §6.1: "averaging the last 5 checkpoints, which were written at 10-minute
  intervals" (20 for the big models). Sums in float32; the result has the saved dtypes.
  """
  if last < 1:
    raise ValueError(f"average of the last {last} checkpoints: choose 1 or more")
  all_steps = sorted(_read_only_manager(workdir).all_steps(), reverse=True)
  if not all_steps:
    raise FileNotFoundError(f"no checkpoint under {workdir}/checkpoints; train first")
  total, steps = None, []
  for step in all_steps:
    try:
      params = restore_params(workdir, abstract_params, step)
    except FileNotFoundError:  # unreadable: warned about, the next older one counts instead
      continue
    params = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
    total = params if total is None else jax.tree.map(np.add, total, params)
    steps.append(step)
    if len(steps) == last:
      break
  if not steps:
    raise FileNotFoundError(f"no checkpoint under {workdir}/checkpoints can be read")
  mean = jax.tree.map(lambda x, a: (x / len(steps)).astype(a.dtype), total, abstract_params)
  return mean, sorted(steps)


def _read_only_manager(workdir: str) -> ocp.CheckpointManager:
  """A manager that reads a workdir's checkpoints (and never rotates them)."""
  return ocp.CheckpointManager(
    _directory(workdir),
    item_handlers={
      "state": ocp.PyTreeCheckpointHandler(),
      "data": grain.checkpoint.CheckpointHandler(),
    },
  )


def check_params_fit(manager: ocp.CheckpointManager, step: int, abstract_params: Any) -> None:
  """Raises a `CheckpointMismatch` naming the first parameter whose name or shape does not fit.

  Reading the metadata can fail too (a damaged checkpoint): that error is raised as it is.
  """
  saved_shapes = _shapes(_saved_tree(manager, step)["params"])
  wanted_shapes = _shapes(abstract_params)
  where = f"checkpoint step {step} in {manager.directory}"
  fix = "use the config the checkpoint was trained with, or a fresh --workdir"
  for name, shape in wanted_shapes.items():
    if name not in saved_shapes:
      raise CheckpointMismatch(f"parameter {name} of the model is missing from {where}; {fix}")
    if saved_shapes[name] != shape:
      raise CheckpointMismatch(
        f"parameter {name} has shape {saved_shapes[name]} in {where} but {shape} in the "
        f"model; {fix}"
      )
  extra = sorted(set(saved_shapes) - set(wanted_shapes))
  if extra:
    raise CheckpointMismatch(f"parameter {extra[0]} of {where} is not in the model; {fix}")


def _saved_tree(manager: ocp.CheckpointManager, step: int) -> Any:
  """The metadata tree of the saved state (its leaves have shapes and dtypes)."""
  saved = manager.item_metadata(step)["state"]
  return getattr(saved, "tree", saved)


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """Leaf path ("params/layer_0/mlp/hidden/kernel", "opt_state/inner_state/1/0/mu/...") ->
  shape, alike for a pytree of arrays and a checkpoint's metadata tree."""
  return {_path(p): tuple(leaf.shape) for p, leaf in jax.tree.leaves_with_path(tree)}


def _path(key_path) -> str:
  part = lambda k: getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))
  return "/".join(str(part(k)) for k in key_path)


def _directory(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints")
