"""A tiny ViT image classifier on 8 simulated CPU devices, in every parallel mode and mesh;
writes .npz.

Started by tests/training/test_parallel_vit.py in a subprocess (the device count must be set
before JAX starts): `python -m tests.training.run_vit_on_8_devices OUT.npz`. Each run takes the
same global batches of uint8 images (some rows weighted 0, so devices hold different numbers of
real images) and seed; the test compares losses and final parameters with the one-device run.
"""

import os
import sys

# As run_bert_on_8_devices.py: the last two flags cut XLA's CPU compile time about 3x.
os.environ["XLA_FLAGS"] = " ".join(
  (
    "--xla_force_host_platform_device_count=8",
    "--xla_backend_optimization_level=0",
    "--xla_cpu_use_fusion_emitters=false",
  )
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from tests.training.device_runs import (  # noqa: E402
  RUNS,
  flat_params,
  shardings_on_2x2x2,
  start,
  train,
)
from tfjax.models import vit  # noqa: E402
from tfjax.tasks.image_classification import image_loss_fn  # noqa: E402
from tfjax.training import optimizer, sharding  # noqa: E402
from tfjax.training.parallel import Parallel  # noqa: E402
from tfjax.training.state import TrainState  # noqa: E402

MODEL = vit.ViTConfig(
  image_size=8, patch_size=4, num_channels=3, num_classes=3, num_layers=2, num_heads=2,
  d_model=16, d_ff=32, pre_logits=True,
)  # fmt: skip
# warmup_steps=1 as run_bert_on_8_devices.py: the first update has learning rate 0.
TRAIN = dict(learning_rate=1e-2, warmup_steps=1, num_steps=100, weight_decay=0.01,
             grad_clip_norm=1.0)  # fmt: skip
BATCH, STEPS = 16, 4


def batches(num: int) -> list[dict[str, np.ndarray]]:
  """The label is the brightest of the three channels; a fifth of the rows weighted 0."""
  rng = np.random.default_rng(0)
  out = []
  for _ in range(num):
    image = rng.integers(0, 256, (BATCH, 8, 8, 3), dtype=np.uint8)
    weights = (rng.random(BATCH) > 0.2).astype(np.float32)
    weights[0] = 1.0
    label = image.reshape(BATCH, -1, 3).mean(1).argmax(-1).astype(np.int32)
    out.append({"image": image, "label": label, "weights": weights})
  return out


def model(act_sharding=None) -> vit.ViT:
  return vit.ViT(MODEL, activation_sharding=act_sharding)


def init_fn():
  tx, _ = optimizer.make_optimizer(TRAIN)
  init_rng, state_rng = jax.random.split(jax.random.PRNGKey(0))

  def init_state() -> TrainState:
    params = model().init(init_rng, jnp.zeros((1, 8, 8, 3), jnp.float32))["params"]
    # The head starts at zero (as big_vision); move it so every parameter gets a gradient.
    head = jax.random.normal(jax.random.PRNGKey(1), params["classifier"]["kernel"].shape)
    params["classifier"]["kernel"] = 0.1 * head
    return TrainState.create(params, tx, state_rng)

  return init_state


def make(mode: str, mesh_config: dict, devices=None, grad_accum_steps: int = 1) -> Parallel:
  tx, schedule = optimizer.make_optimizer(TRAIN)
  mesh = sharding.make_mesh(mesh_config, devices)
  return Parallel(
    mode,
    mesh,
    sharding.DEFAULT_RULES,
    init_fn=init_fn(),
    loss_fn=image_loss_fn(model(sharding.activation_sharding(mode, mesh)), MODEL.image_size),
    optimizer=tx,
    schedule=schedule,
    grad_accum_steps=grad_accum_steps,
    param_axes=vit.PARAM_AXES,
  )


def main(out_path: str) -> None:
  assert jax.device_count() == 8, jax.devices()
  results = {}
  data = batches(STEPS)
  host_state = jax.device_get(jax.jit(init_fn())())
  results["init_params"] = flat_params(host_state.params)
  for name, (mode, mesh_config, num_devices, accum) in RUNS.items():
    devices = jax.devices()[:num_devices] if num_devices else None
    parallel = make(mode, mesh_config, devices, accum)
    metrics, state = train(parallel, start(parallel, host_state), data)
    for key, values in metrics.items():
      results[f"{name}/{key}"] = values
    results[f"{name}/params"] = flat_params(parallel.to_saved(state).params)
  results["specs"] = shardings_on_2x2x2(init_fn(), vit.PARAM_AXES)
  np.savez(out_path, **{k: np.asarray(v) for k, v in results.items()})


if __name__ == "__main__":
  main(sys.argv[1])
