"""One device mesh with named axes (data, fsdp, tensor), and shardings from logical axis rules.

The mesh comes from `config.parallel.mesh` (-1: the devices the other axes leave). Parameters
carry logical axes (`tfjax.nn.partitioning`); `config.parallel.rules` maps each logical axis to
mesh axes, as Flax's `logical_axis_rules`. With the default rules a batch is split over data x
fsdp, weights over fsdp along d_model (ZeRO-3 style) and over tensor along heads / MLP units.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.experimental import mesh_utils, multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tfjax.nn.partitioning import PARAM_AXES, ParamAxes, logical_axes, path_str

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")
MODES = ("jit", "shard_map", "pmap")
DEFAULT_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
  ("embed", "fsdp"),
  ("heads", "tensor"),
  ("mlp", "tensor"),
  ("vocab", "tensor"),
  ("position", None),
  ("layers", None),
)


def initialize_distributed(parallel_config: Mapping[str, Any]) -> None:
  """`jax.distributed.initialize` from `parallel.distributed`, before any other JAX call.

  enabled=False: one process. enabled=True with no coordinator_address: JAX detects the cluster
  (Cloud TPU VMs, SLURM, ...). With an address: the given process count and id (e.g. local
  CPU processes; `local_cpu_devices` > 0 sets each process's simulated CPU device count).
  """
  dist = parallel_config.get("distributed", None) or {}
  if dist.get("local_cpu_devices", 0):
    jax.config.update("jax_num_cpu_devices", int(dist["local_cpu_devices"]))
  if not dist.get("enabled", False) or jax.distributed.is_initialized():
    return
  if dist.get("coordinator_address", ""):
    jax.distributed.initialize(
      coordinator_address=dist["coordinator_address"],
      num_processes=int(dist["num_processes"]),
      process_id=int(dist["process_id"]),
    )
  else:
    jax.distributed.initialize()
  logging.info("process %d of %d", jax.process_index(), jax.process_count())


def mesh_shape(mesh_config: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
  """Sizes of (data, fsdp, tensor); one -1 takes the rest. Errors name the numbers and the fix."""
  unknown = sorted(set(mesh_config) - set(MESH_AXES))
  if unknown:
    raise ValueError(f"parallel.mesh has unknown axes {unknown}; the axes are {MESH_AXES}")
  sizes = [int(mesh_config.get(axis, 1)) for axis in MESH_AXES]
  named = lambda sizes: dict(zip(MESH_AXES, sizes, strict=True))
  if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"parallel.mesh={named(sizes)}: sizes must be >= 1, with at most one -1")
  known = math.prod(s for s in sizes if s != -1)
  if num_devices % known:
    raise ValueError(
      f"parallel.mesh={named(sizes)} needs a multiple of {known} devices, but "
      f"there are {num_devices}; choose axis sizes whose product divides {num_devices}"
    )
  sizes = [num_devices // known if s == -1 else s for s in sizes]
  if math.prod(sizes) != num_devices:
    raise ValueError(
      f"parallel.mesh={named(sizes)} uses {math.prod(sizes)} of the "
      f"{num_devices} devices; set one axis to -1 or make the product {num_devices}"
    )
  return tuple(sizes)


def make_mesh(mesh_config: Mapping[str, int], devices: Sequence[Any] | None = None) -> Mesh:
  """The (data, fsdp, tensor) mesh over all devices (of all processes)."""
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(mesh_config, len(devices))
  try:  # topology-aware device order on TPU/GPU slices
    grid = mesh_utils.create_device_mesh(shape, devices)
  except (AssertionError, NotImplementedError, ValueError):
    grid = np.array(devices).reshape(shape)
  return Mesh(grid, MESH_AXES)


def check_batch(mesh: Mesh, global_batch_size: int, grad_accum_steps: int = 1) -> None:
  """The global batch is split over data x fsdp (and micro-batches), never multiplied."""
  shards = mesh.shape["data"] * mesh.shape["fsdp"]
  if global_batch_size % (shards * grad_accum_steps):
    raise ValueError(
      f"train.batch_size={global_batch_size} is not divisible by data x fsdp = {shards} devices"
      + (f" x grad_accum_steps={grad_accum_steps}" if grad_accum_steps > 1 else "")
      + f"; choose a batch size that is a multiple of {shards * grad_accum_steps}"
    )


def mesh_spec(
  axes: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules: Sequence[tuple]
) -> PartitionSpec:
  """Maps logical axes to a PartitionSpec; a dimension the mesh axes do not divide is replicated."""
  rule = dict(rules)
  spec, used = [], set()
  for dim, name in zip(shape, axes, strict=True):
    targets = rule.get(name) if name is not None else None
    targets = (targets,) if isinstance(targets, str) else tuple(targets or ())
    targets = tuple(a for a in targets if a not in used and mesh.shape[a] > 1)
    size = math.prod(mesh.shape[a] for a in targets)
    if not targets or dim % size:
      spec.append(None)
      continue
    used.update(targets)
    spec.append(targets[0] if len(targets) == 1 else targets)
  return PartitionSpec(*spec)


def tree_shardings(
  tree: Any, mesh: Mesh, rules: Sequence[tuple], param_axes: ParamAxes = PARAM_AXES
) -> Any:
  """NamedShardings for a train state (or params): weights and their optimizer moments by
  their logical axes (`param_axes`: the model's table), every scalar and unnamed leaf (step,
  rng, counts) replicated."""

  def sharding(key_path: tuple, leaf: Any) -> NamedSharding:
    path, shape = path_str(key_path), tuple(leaf.shape)
    top = path.split("/", 1)[0]
    if not shape or top in ("step", "rng"):
      return NamedSharding(mesh, PartitionSpec())
    try:
      axes = logical_axes(path.removeprefix("params/"), len(shape), param_axes)
    except ValueError:
      if top != "opt_state":  # every parameter must have logical axes
        raise
      return NamedSharding(mesh, PartitionSpec())
    return NamedSharding(mesh, mesh_spec(axes, shape, mesh, rules))

  return jax.tree.map_with_path(sharding, tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Batch dimension split over data x fsdp; the rest replicated."""
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def activation_sharding(mode: str, mesh: Mesh) -> NamedSharding | None:
  """What `GPT(activation_sharding=...)` wants: activations split by batch under sharded jit
  (else XLA may follow the weights' fsdp sharding into them); None where the step is written
  per device (shard_map, pmap) or runs on one device."""
  return batch_sharding(mesh) if mode == "jit" and mesh.size > 1 else None


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def on_host(params: Any) -> Any:
  """Parameters (any pytree of arrays) as host numpy arrays, gathered from every process if
  they span several (for decoding on the host at the end of a run)."""
  if all(x.is_fully_addressable for x in jax.tree.leaves(params)):
    return jax.device_get(params)
  return multihost_utils.process_allgather(params, tiled=True)
