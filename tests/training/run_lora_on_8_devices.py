"""LoRA fine-tuning (GPT-1-style classification on a pre-LN GPT, adapters on the attention and
MLP projections) on 8 simulated CPU devices, against the one-device step; writes .npz.

Started by tests/training/test_parallel_lora.py in a subprocess (the device count must be set
before JAX starts): `python -m tests.training.run_lora_on_8_devices OUT.npz`. The batches, model
and loss are those of run_gpt_fine_tuning_on_8_devices.py; the optimizer freezes the body
(`tfjax.nn.lora.trainable`) as a LoRA fine-tuning run does.
"""

import os
import sys

os.environ["XLA_FLAGS"] = " ".join(
  (
    "--xla_force_host_platform_device_count=8",
    "--xla_backend_optimization_level=0",
    "--xla_cpu_use_fusion_emitters=false",
  )
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import functools  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import traverse_util  # noqa: E402

from tests.training.device_runs import RUNS, start, train  # noqa: E402
from tests.training.run_gpt_fine_tuning_on_8_devices import (  # noqa: E402
  GPT2,
  LM_COEF,
  TRAIN,
  batches,
)
from tfjax.models.gpt import FINE_TUNING_PARAM_AXES, GPTForFineTuning  # noqa: E402
from tfjax.nn import lora  # noqa: E402
from tfjax.tasks.gpt_fine_tuning import fine_tuning_loss_fn  # noqa: E402
from tfjax.training import optimizer, sharding  # noqa: E402
from tfjax.training.parallel import Parallel  # noqa: E402
from tfjax.training.state import TrainState  # noqa: E402
from tfjax.training.step import without_frozen_gradients  # noqa: E402

COMPARED = ("one_device", "jit_tensor2", "shard_map")  # 2 x 2 x 2 shards the adapters too
CONFIG = GPT2.replace(lora=lora.LoRA(rank=2, alpha=4.0, mlp=True))
TRAINABLE = functools.partial(lora.trainable, frozen="gpt")
STEPS = 4


def model(act_sharding=None) -> GPTForFineTuning:
  return GPTForFineTuning(
    CONFIG, num_outputs=3, classifier_dropout_rate=0.0, activation_sharding=act_sharding
  )


def init_state() -> TrainState:
  tx, _ = optimizer.make_optimizer(TRAIN, trainable=TRAINABLE)
  init_rng, state_rng = jax.random.split(jax.random.PRNGKey(0))
  tokens = jnp.zeros((1, 1, 16), jnp.int32)
  params = model().init(init_rng, tokens, jnp.zeros((1, 1), jnp.int32))["params"]
  return TrainState.create(params, tx, state_rng)


def make(mode: str, mesh_config: dict, devices=None) -> Parallel:
  tx, schedule = optimizer.make_optimizer(TRAIN, trainable=TRAINABLE)
  mesh = sharding.make_mesh(mesh_config, devices)
  loss_fn = fine_tuning_loss_fn(model(sharding.activation_sharding(mode, mesh)), LM_COEF, False)
  return Parallel(
    mode,
    mesh,
    sharding.DEFAULT_RULES,
    init_fn=init_state,
    loss_fn=without_frozen_gradients(loss_fn, TRAINABLE),
    optimizer=tx,
    schedule=schedule,
    param_axes=FINE_TUNING_PARAM_AXES,
  )


def main(out_path: str) -> None:
  assert jax.device_count() == 8, jax.devices()
  data = batches("classification", STEPS)
  host_state = jax.device_get(jax.jit(init_state)())
  flat = lambda params: traverse_util.flatten_dict(jax.device_get(params), sep="/")
  results = {f"init/{k}": np.asarray(v) for k, v in flat(host_state.params).items()}
  results["opt_state_leaves"] = np.array(len(jax.tree.leaves(host_state.opt_state)))
  for name in COMPARED:
    mode, mesh_config, num_devices, _ = RUNS[name]
    devices = jax.devices()[:num_devices] if num_devices else None
    parallel = make(mode, mesh_config, devices)
    metrics, state = train(parallel, start(parallel, host_state), data)
    for key, values in metrics.items():
      results[f"{name}/metric/{key}"] = values
    for key, value in flat(parallel.to_saved(state).params).items():
      results[f"{name}/params/{key}"] = np.asarray(value)
    if name == "jit_tensor2":
      a = state.params["gpt"]["layer_0"]["mlp"]["hidden"]["lora_b"]
      results["lora_b_spec"] = np.array(str(a.sharding.spec))
  np.savez(out_path, **results)


if __name__ == "__main__":
  main(sys.argv[1])
