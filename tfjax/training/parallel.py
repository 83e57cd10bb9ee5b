"""Three interchangeable data-parallel training steps on one mesh, chosen by parallel.mode.

- "jit" (default): `jax.jit` with NamedSharding in/out shardings. The batch is split over
  data x fsdp; weights and optimizer state are sharded by their logical axes (replicated when
  fsdp = tensor = 1, ZeRO-3 style over fsdp, heads / MLP units over tensor). XLA inserts the
  collectives.
- "shard_map": the same step written per device with `jax.shard_map`: the batch split over
  data, state replicated, token-weighted loss and gradient sums reduced with `psum`.
- "pmap": the older API for setups that expect it: state replicated with a leading device
  axis, the step `pmap`ped with the same `psum`s; checkpoints are written from one copy.

The same global batch and seed give the same losses in all three and on one device. The
trainer talks to a `Parallel` only: it does not know which mode runs.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, PartitionSpec

from tfjax.nn.partitioning import PARAM_AXES, ParamAxes
from tfjax.training import sharding
from tfjax.training.state import TrainState
from tfjax.training.step import LossFn, eval_step, sum_over_devices, train_step

PMAP_AXIS = "devices"


class Parallel:
  """Places state and batches for one mode, and runs its train and eval steps.

  The state's shardings are fixed when it is made, from the shapes `init_fn` gives: the steps
  compile for them whichever method is called first.
  """

  def __init__(
    self,
    mode: str,
    mesh: Mesh,
    rules: Any,
    *,
    init_fn: Callable[[], TrainState],
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    schedule: optax.Schedule,
    grad_accum_steps: int = 1,
    param_axes: ParamAxes = PARAM_AXES,
  ):
    if mode not in sharding.MODES:
      raise ValueError(f"parallel.mode={mode!r} is unknown; choose one of {sharding.MODES}")
    if mode != "jit" and (mesh.shape["fsdp"] > 1 or mesh.shape["tensor"] > 1):
      raise ValueError(
        f"parallel.mode={mode!r} is data parallel only, but the mesh has fsdp="
        f"{mesh.shape['fsdp']}, tensor={mesh.shape['tensor']}; use mode='jit' to shard weights"
      )
    self.mode, self.mesh, self.rules = mode, mesh, rules
    self._init_fn = init_fn
    step = functools.partial(
      train_step,
      loss_fn=loss_fn,
      optimizer=optimizer,
      schedule=schedule,
      grad_accum_steps=grad_accum_steps,
    )
    evaluate = functools.partial(eval_step, loss_fn=loss_fn)
    self._batch_sharding = sharding.batch_sharding(mesh)
    self._replicated = sharding.replicated(mesh)
    shapes = jax.eval_shape(init_fn)
    if mode == "jit":
      self._state_shardings = sharding.tree_shardings(shapes, mesh, rules, param_axes)
    else:
      self._state_shardings = jax.tree.map(lambda _: self._replicated, shapes)
    self._abstract_state = jax.tree.map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
      shapes,
      self._state_shardings,
    )
    self._step_impl, self._eval_impl = step, evaluate
    self._step = self._eval = None
    self._num_local = jax.local_device_count()

  # --------------------------------------------------------------------------------- state

  def abstract_state(self) -> TrainState:
    """Shapes, dtypes and target shardings of the state as saved (for Orbax restore)."""
    return self._abstract_state

  def init_state(self) -> TrainState:
    """A fresh state from `init_fn`, created directly with its shardings (never whole on one
    device)."""
    return self.from_saved(jax.jit(self._init_fn, out_shardings=self._state_shardings)())

  def from_saved(self, state: TrainState) -> TrainState:
    """The state as the step wants it: pmap replicates it over the local devices."""
    if self.mode != "pmap":
      return state
    return jax.pmap(lambda _, s: s, in_axes=(0, None), axis_name=PMAP_AXIS)(
      jnp.arange(self._num_local), state
    )

  def to_saved(self, state: TrainState) -> TrainState:
    """The state as checkpoints hold it: one copy (pmap), sharded by logical axes otherwise."""
    if self.mode != "pmap":
      return state
    one_copy = jax.tree.map(lambda x: np.asarray(x[0]), state)
    return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(self._replicated, x), one_copy
    )

  def place_params(self, params: Any) -> Any:
    """Parameters (host or device arrays, the same on every process) -> placed as the saved
    state's params are."""
    return jax.device_put(params, self._state_shardings.params)

  # ------------------------------------------------------------------------------- batches

  def put_batch(self, local_batch: dict[str, np.ndarray]) -> Any:
    """This process's rows of the global batch -> what the step takes."""
    if self.mode == "pmap":
      return jax.tree.map(
        lambda x: x.reshape(self._num_local, x.shape[0] // self._num_local, *x.shape[1:]),
        local_batch,
      )
    return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(self._batch_sharding, x), local_batch
    )

  def put_global_batch(self, batch: dict[str, np.ndarray]) -> Any:
    """A batch every process holds whole (evaluation) -> what the step takes."""
    if self.mode == "pmap":
      rows = len(next(iter(batch.values()))) // jax.process_count()
      start = jax.process_index() * rows
      return self.put_batch(jax.tree.map(lambda x: x[start : start + rows], batch))
    return jax.tree.map(
      lambda x: jax.make_array_from_callback(x.shape, self._batch_sharding, lambda i: x[i]), batch
    )

  # --------------------------------------------------------------------------------- steps

  def train_step(self, state: TrainState, batch: Any) -> tuple[TrainState, dict]:
    if self._step is None:
      self._step = self.train_step_fn()
    state, metrics = self._step(state, batch)
    if self.mode == "pmap":
      metrics = jax.tree.map(lambda x: x[0], metrics)  # identical on every device
    return state, metrics

  def eval_step(self, params: Any, batch: Any) -> dict:
    """Loss and token count of the whole global batch, in every mode and on every process."""
    if self._eval is None:
      self._eval = self._compile_eval_step()
    metrics = self._eval(params, batch)
    if self.mode == "pmap":
      metrics = jax.tree.map(lambda x: x[0], metrics)  # identical on every device
    return metrics

  def train_step_fn(self) -> Callable:
    """The jitted (or pmapped) step itself, e.g. to `.lower(...)` for compile time and memory."""
    if self.mode == "jit":
      return jax.jit(
        self._step_impl,
        in_shardings=(self._state_shardings, self._batch_sharding),
        out_shardings=(self._state_shardings, self._replicated),
        donate_argnums=0,
      )
    if self.mode == "shard_map":
      per_device = functools.partial(self._step_impl, axis_name=sharding.BATCH_AXES)
      return jax.jit(
        jax.shard_map(
          per_device,
          mesh=self.mesh,
          in_specs=(PartitionSpec(), PartitionSpec(sharding.BATCH_AXES)),
          out_specs=(PartitionSpec(), PartitionSpec()),
          check_vma=False,  # else replicated params' gradients come summed, and psum'd twice
        ),
        donate_argnums=0,
      )
    per_device = functools.partial(self._step_impl, axis_name=PMAP_AXIS)
    return jax.pmap(per_device, axis_name=PMAP_AXIS, donate_argnums=0)

  def _compile_eval_step(self) -> Callable:
    if self.mode == "pmap":
      # pmap returns only this process's devices' values: sum the token-weighted losses over
      # the devices of all processes, so that every process gets the whole batch's loss.
      def per_device(params: Any, batch: Any) -> dict:
        metrics = self._eval_impl(params, batch)
        loss, aux, _ = sum_over_devices(metrics.pop("loss"), metrics, (), PMAP_AXIS)
        return {"loss": loss, **aux}

      return jax.pmap(per_device, axis_name=PMAP_AXIS)
    return jax.jit(
      self._eval_impl,
      in_shardings=(self._state_shardings.params, self._batch_sharding),
      out_shardings=self._replicated,
    )
