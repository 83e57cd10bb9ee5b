"""A tiny Transformer trained on packed sentence pairs on 8 simulated CPU devices, in every
parallel mode and mesh; writes .npz.

Started by tests/training/test_parallel_translation.py in a subprocess (the device count must be
set before JAX starts): `python -m tests.training.run_translation_on_8_devices OUT.npz`. Each
run takes the same global batches and seed; the test compares losses and final parameters with
the one-device run, and reads the parameter shardings of the 2 x 2 x 2 (data x fsdp x tensor)
mesh. The batches are packed pairs of random lengths, so the devices' parts hold different
numbers of target tokens.
"""

import os
import sys
import time

# The last two flags cut XLA's CPU compile time about 3x (7 steps compile here): the test
# compares partitionings, and the one-device reference is compiled the same way.
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
from tfjax.data.seq2seq import Pairs, pack_pairs  # noqa: E402
from tfjax.models import transformer  # noqa: E402
from tfjax.models.transformer import Transformer, TransformerConfig  # noqa: E402
from tfjax.tasks.translation import translation_loss_fn  # noqa: E402
from tfjax.training import optimizer, sharding  # noqa: E402
from tfjax.training.parallel import Parallel  # noqa: E402
from tfjax.training.state import TrainState  # noqa: E402

MODEL = TransformerConfig(
  vocab_size=64, max_len=16, num_layers=2, num_heads=2, d_model=32, d_ff=64, dropout_rate=0.0
)
SMOOTHING = 0.1
# The Transformer's schedule and Adam (b2 0.98), but scaled: lr = 0.05 * 32^-0.5 * min(n^-0.5,
# n * 2^-1.5) = 3.1e-3, 6.3e-3, 5.1e-3, 4.4e-3, which moves weights by ~2e-2 and lowers the loss
# each step (the paper's scale 1.0 with 2 warmup steps overshoots here: loss 4.1, 3.7, 4.1, 3.7).
# Adam's step lr * m / (sqrt(v) + eps) follows rounding in g as ~lr * dg / |g|, so a weight with
# a tiny gradient (a key-bias-like cancellation) drifts by ~lr * 1e-4 between partitionings;
# halving the scale from 0.1 halved the worst drift (measured), to half the tolerance.
# eps: the schedule's first update is not lr 0 (BERT's script sets warmup_steps=1 for that), and
# Adam's first step is lr * g / (|g| + eps), steep in g where |g| is near eps: with the paper's
# eps = 1e-9, a decoder/layer_1/mlp/hidden kernel entry with |g| = 3.5e-8 (float32 rounding
# 1.7e-9) moves 4e-6 apart between partitionings (measured), 4x the tolerance. eps = 1e-12
# makes that step lr * sign(g) for every |g| >> 1e-12; only the key biases' gradient is that
# small (0 up to rounding), and the comparison leaves them out (flat_params).
TRAIN = dict(schedule="inverse_sqrt", learning_rate=0.05, warmup_steps=2, b1=0.9, b2=0.98,
             eps=1e-12, weight_decay=0.0, grad_clip_norm=0.0)  # fmt: skip
BATCH, SEQ, STEPS = 16, MODEL.max_len, 4  # rows of SEQ token slots per side
PAD, BOS, EOS, FIRST_WORD = 0, 1, 2, 3


# ------------------------------------------------------------------------------ data


def packed_batches(num: int) -> list[dict[str, np.ndarray]]:
  """`num` batches of BATCH packed rows. A pair: a source of 1 to 9 words counting up by a
  stride of 1 to 3; its target, of 1 to 9 words, counts down from the source's first word. The
  rows hold 1 to several pairs each, so they (and the devices' parts) have unequal token
  counts."""
  rng = np.random.default_rng(0)
  words = MODEL.vocab_size - FIRST_WORD
  sources, targets = [], []
  for _ in range(num * BATCH * 4):
    n, m = rng.integers(1, 10, 2)
    start, stride = rng.integers(0, words), rng.integers(1, 4)
    sources.append((FIRST_WORD + (start + stride * np.arange(n)) % words).astype(np.int32))
    targets.append((FIRST_WORD + (start - stride * np.arange(m)) % words).astype(np.int32))
  packed = pack_pairs(Pairs(sources, targets), SEQ, BOS, EOS)
  assert len(packed["inputs"]) >= num * BATCH, len(packed["inputs"])
  return [{k: v[i * BATCH : (i + 1) * BATCH] for k, v in packed.items()} for i in range(num)]


# ------------------------------------------------------------------------------ runs


def init_fn():
  tx, _ = optimizer.make_optimizer(TRAIN, d_model=MODEL.d_model)
  init_rng, state_rng = jax.random.split(jax.random.PRNGKey(0))

  def init_state() -> TrainState:
    tokens = jnp.zeros((1, SEQ), jnp.int32)
    params = Transformer(MODEL).init(init_rng, tokens, tokens)["params"]
    return TrainState.create(params, tx, state_rng)

  return init_state


def make(mode: str, mesh_config: dict, devices=None, grad_accum_steps: int = 1):
  tx, schedule = optimizer.make_optimizer(TRAIN, d_model=MODEL.d_model)
  mesh = sharding.make_mesh(mesh_config, devices)
  model = Transformer(MODEL, activation_sharding=sharding.activation_sharding(mode, mesh))
  return Parallel(
    mode,
    mesh,
    sharding.DEFAULT_RULES,
    init_fn=init_fn(),
    loss_fn=translation_loss_fn(model, SMOOTHING),
    optimizer=tx,
    schedule=schedule,
    grad_accum_steps=grad_accum_steps,
    param_axes=transformer.PARAM_AXES,
  )


def main(out_path: str) -> None:
  assert jax.device_count() == 8, jax.devices()
  data = packed_batches(STEPS)
  # Target tokens of each device's part under the 8-way data split [steps, 8].
  results = {
    "device_tokens": np.array(
      [(b["decoder_segmentation"] != 0).reshape(8, -1).sum(1) for b in data]
    ),
  }
  host_state = jax.device_get(jax.jit(init_fn())())
  results["init_params"] = flat_params(host_state.params)
  for name, (mode, mesh_config, num_devices, accum) in RUNS.items():
    began = time.perf_counter()
    devices = jax.devices()[:num_devices] if num_devices else None
    parallel = make(mode, mesh_config, devices, accum)
    metrics, state = train(parallel, start(parallel, host_state), data)
    for key, values in metrics.items():
      results[f"{name}/{key}"] = values
    results[f"{name}/params"] = flat_params(parallel.to_saved(state).params)
    if name == "jit_tensor2":
      embedding = state.params["token_embed"]["embedding"]
      results[f"{name}/token_embed_spec"] = np.array(str(embedding.sharding.spec))
    results[f"{name}/seconds"] = np.array(time.perf_counter() - began)
  results["specs"] = shardings_on_2x2x2(init_fn(), transformer.PARAM_AXES)

  np.savez(out_path, **{k: np.asarray(v) for k, v in results.items()})


if __name__ == "__main__":
  main(sys.argv[1])
