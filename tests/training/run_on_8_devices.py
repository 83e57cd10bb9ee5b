"""Tiny GPT training on 8 simulated CPU devices, in every parallel mode and mesh; writes .npz.

Started by tests/training/test_parallel.py in a subprocess (the device count must be set before
JAX starts): `python -m tests.training.run_on_8_devices OUT.npz`. Each run takes the same
global batches and seed; the test compares losses and final parameters with the one-device run.
"""

import os
import sys
import tempfile

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from tests.training.device_runs import flat_params  # noqa: E402
from tests.training.parallel_runs import NAN_STEP_RUNS  # noqa: E402
from tfjax.models import gpt  # noqa: E402
from tfjax.models.gpt import GPT, GPTConfig  # noqa: E402
from tfjax.tasks.lm import lm_loss_fn  # noqa: E402
from tfjax.training import checkpoint, optimizer, sharding  # noqa: E402
from tfjax.training.parallel import Parallel  # noqa: E402
from tfjax.training.state import TrainState  # noqa: E402

MODEL = GPTConfig(
  vocab_size=64, max_len=16, num_layers=2, num_heads=4, d_model=32, d_ff=64,
  dropout_rate=0.0, attention_dropout_rate=0.0,
)  # fmt: skip
TRAIN = dict(learning_rate=1e-2, warmup_steps=2, num_steps=100, weight_decay=0.01,
             grad_clip_norm=1.0, on_nonfinite="skip")  # fmt: skip
BATCH, SEQ, STEPS = 16, 16, 6


def batches(num: int) -> list[dict[str, np.ndarray]]:
  """Learnable sequences: counting up from a random start by a random stride of 1 to 3."""
  rng = np.random.default_rng(0)
  start = rng.integers(0, MODEL.vocab_size, (num, BATCH, 1))
  stride = rng.integers(1, 4, (num, BATCH, 1))
  tokens = ((start + stride * np.arange(SEQ + 1)) % MODEL.vocab_size).astype(np.int32)
  return [{"inputs": t[:, :-1], "targets": t[:, 1:]} for t in tokens]


def make(mode: str, mesh_config: dict, devices=None, grad_accum_steps: int = 1):
  model = GPT(MODEL)
  tx, schedule = optimizer.make_optimizer(TRAIN)
  init_rng, state_rng = jax.random.split(jax.random.PRNGKey(0))

  def init_state() -> TrainState:
    params = model.init(init_rng, jnp.zeros((1, SEQ), jnp.int32))["params"]
    return TrainState.create(params, tx, state_rng)

  mesh = sharding.make_mesh(mesh_config, devices)
  act_sharding = sharding.activation_sharding(mode, mesh)
  parallel = Parallel(
    mode,
    mesh,
    sharding.DEFAULT_RULES,
    init_fn=init_state,
    loss_fn=lm_loss_fn(GPT(MODEL, activation_sharding=act_sharding)),
    optimizer=tx,
    schedule=schedule,
    grad_accum_steps=grad_accum_steps,
    param_axes=gpt.PARAM_AXES,
  )
  return parallel


def train(parallel: Parallel, state, data) -> tuple[list[float], TrainState]:
  losses, _, state = train_counting_skips(parallel, state, data)
  return losses, state


def train_counting_skips(parallel: Parallel, state, data) -> tuple[list[float], int, TrainState]:
  """(losses, updates skipped as non-finite, final state)."""
  losses = []
  for batch in data:
    state, metrics = parallel.train_step(state, parallel.put_batch(batch))
    losses.append(float(metrics["loss"]))
  return losses, int(metrics["skipped_updates"]), state


def poisoned(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """`batch` with one token id past the vocabulary: its embedding lookup gives NaN (jnp.take
  fills out-of-range rows), so the loss and every gradient are NaN."""
  inputs = batch["inputs"].copy()
  inputs[0, 0] = MODEL.vocab_size + 1000
  return {**batch, "inputs": inputs}


def per_device_bytes(state) -> int:
  """Bytes of the state on device 0 (what one device holds)."""
  device = jax.devices()[0]
  return sum(
    shard.data.nbytes
    for x in jax.tree.leaves(state)
    for shard in x.addressable_shards
    if shard.device == device
  )


def main(out_path: str) -> None:
  assert jax.device_count() == 8, jax.devices()
  data = batches(STEPS)
  results = {}
  runs = {
    "one_device": ("jit", {"data": 1}, jax.devices()[:1], 1),
    "jit_data8": ("jit", {"data": -1}, None, 1),
    "jit_fsdp4": ("jit", {"data": 2, "fsdp": 4}, None, 1),
    "jit_tensor2": ("jit", {"data": 2, "fsdp": 2, "tensor": 2}, None, 1),
    "shard_map": ("shard_map", {"data": -1}, None, 1),
    "pmap": ("pmap", {"data": -1}, None, 1),
    "jit_data8_accum2": ("jit", {"data": -1}, None, 2),
    "shard_map_accum2": ("shard_map", {"data": -1}, None, 2),
  }
  # A NaN step in the middle is skipped: the run then equals the run without its batch.
  with_nan = [*data[:2], poisoned(data[2]), *data[2:]]
  for name, (mode, mesh_config, devices, accum) in runs.items():
    parallel = make(mode, mesh_config, devices, accum)
    losses, state = train(parallel, parallel.init_state(), data)
    results[f"{name}/losses"] = np.array(losses)
    results[f"{name}/params"] = flat_params(parallel.to_saved(state).params)
    if name in NAN_STEP_RUNS:
      losses, skipped, state = train_counting_skips(parallel, parallel.init_state(), with_nan)
      results[f"{name}/nan_step_losses"] = np.array(losses)
      results[f"{name}/nan_step_skipped"] = np.array(skipped)
      results[f"{name}/nan_step_params"] = flat_params(parallel.to_saved(state).params)

  # A first step on host arrays, before any init_state / abstract_state of its Parallel, still
  # compiles for the state's shardings (fixed when the Parallel is made): FSDP-sharded output.
  host_state = jax.device_get(make("jit", {"data": 1}, jax.devices()[:1]).init_state())
  parallel = make("jit", {"data": 2, "fsdp": 4})
  losses, state = train(parallel, host_state, data)
  results["first_step_on_host_state/losses"] = np.array(losses)
  results["first_step_on_host_state/params"] = flat_params(parallel.to_saved(state).params)
  placed = jax.tree.leaves(state)
  wanted = jax.tree.leaves(parallel.abstract_state())
  results["first_step_on_host_state/sharded_as_saved"] = np.array(
    [x.sharding.is_equivalent_to(a.sharding, x.ndim) for x, a in zip(placed, wanted, strict=True)]
  )
  results["first_step_on_host_state/fsdp_leaves"] = np.array(
    sum("fsdp" in str(a.sharding.spec) for a in wanted)
  )

  # Memory: what one device holds, replicated vs FSDP over 8.
  for name, mesh_config in (("replicated", {"data": -1}), ("fsdp8", {"fsdp": -1})):
    parallel = make("jit", mesh_config)
    results[f"bytes/{name}"] = np.array(per_device_bytes(parallel.init_state()))

  # Save on 8 devices with FSDP; restore on 1 device and on a 2x4 (data x tensor) mesh.
  with tempfile.TemporaryDirectory() as workdir:
    parallel = make("jit", {"data": 2, "fsdp": 4})
    _, state = train(parallel, parallel.init_state(), data[:3])
    manager = checkpoint.checkpoint_manager(workdir, max_to_keep=1)
    checkpoint.save(manager, 3, parallel.to_saved(state))
    manager.wait_until_finished()
    results["restore/saved_on_fsdp"], _ = train(parallel, state, data[3:])
    for name, mesh_config, devices in (
      ("one_device", {"data": 1}, jax.devices()[:1]),
      ("data2_tensor4", {"data": 2, "tensor": 4}, None),
    ):
      parallel = make("jit", mesh_config, devices)
      restored = checkpoint.restore(manager, parallel.abstract_state())
      results[f"restore/{name}"], _ = train(parallel, parallel.from_saved(restored), data[3:])
  np.savez(out_path, **{k: np.asarray(v) for k, v in results.items()})


if __name__ == "__main__":
  main(sys.argv[1])
