"""What the 8-device scripts (tests/training/run_*_on_8_devices.py) share: the runs they
compare, placing one host state for a mode, training on a list of batches, and the shardings
of a parameter tree. Imported after the script has set the simulated device count."""

from collections.abc import Callable

import jax
import numpy as np
from flax import traverse_util

from tfjax.nn.partitioning import ParamAxes, path_str
from tfjax.training import sharding
from tfjax.training.parallel import Parallel
from tfjax.training.state import TrainState

# The runs every 8-device script compares with "one_device":
# name: (mode, mesh, devices (None: all 8), grad_accum_steps)
RUNS = {
  "one_device": ("jit", {"data": 1}, 1, 1),
  "jit_data8": ("jit", {"data": -1}, None, 1),
  "jit_fsdp4": ("jit", {"data": 2, "fsdp": 4}, None, 1),
  "jit_tensor2": ("jit", {"data": 2, "fsdp": 2, "tensor": 2}, None, 1),
  "shard_map": ("shard_map", {"data": -1}, None, 1),
  "pmap": ("pmap", {"data": -1}, None, 1),
  "jit_data8_accum2": ("jit", {"data": -1}, None, 2),
}


def start(parallel: Parallel, host_state: TrainState) -> TrainState:
  """The initial state placed as `parallel` wants it. The same host copy for every run (what a
  restore does: `abstract_state`, then `from_saved`) saves an init compilation per run."""
  abstract = parallel.abstract_state()
  placed = jax.device_put(host_state, jax.tree.map(lambda x: x.sharding, abstract))
  return parallel.from_saved(placed)


def train(parallel: Parallel, state, data) -> tuple[dict[str, np.ndarray], TrainState]:
  """Metrics of every step, as arrays [steps]."""
  history = []
  for batch in data:
    state, metrics = parallel.train_step(state, parallel.put_batch(batch))
    history.append(jax.device_get(metrics))
  return {k: np.array([float(m[k]) for m in history]) for k in history[0]}, state


def shardings_on_2x2x2(init_fn: Callable[[], TrainState], param_axes: ParamAxes) -> np.ndarray:
  """'path=PartitionSpec(...)' of every parameter, from tree_shardings on the 2x2x2 mesh."""
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  shapes = jax.eval_shape(init_fn).params
  shardings = sharding.tree_shardings(shapes, mesh, sharding.DEFAULT_RULES, param_axes)
  flat = jax.tree_util.tree_flatten_with_path(shardings)[0]
  return np.array([f"{path_str(p)}={s.spec}" for p, s in flat])


def flat_params(params) -> np.ndarray:
  """All parameters in one vector but the attention key biases (the middle third of a fused
  `qkv` bias, the first half of a cross-attention `key_value` bias): a key bias adds q.b_k to the
  logits of every key of a query alike, which the softmax cancels, so its true gradient is 0 and
  what it gets is rounding noise, which Adam (g / (sqrt(v) + eps)) scales up to steps of ~lr of
  either sign. Unrolled layers (a stacked layout would need its layer axis kept)."""
  parts = []
  for path, x in traverse_util.flatten_dict(jax.device_get(params)).items():
    x = np.asarray(x)
    if path[-2:] == ("qkv", "bias"):
      third = x.shape[-1] // 3
      x = np.delete(x, np.s_[third : 2 * third], axis=-1)
    elif path[-2:] == ("key_value", "bias"):
      x = np.delete(x, np.s_[: x.shape[-1] // 2], axis=-1)
    parts.append(np.ravel(x))
  return np.concatenate(parts)
