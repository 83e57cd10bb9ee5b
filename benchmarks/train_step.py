r"""Tokens/s and MFU of the GPT training step, against a matmul peak measured in the same run.

FLOPs per step = 6 * N * tokens + 12 * num_layers * seq_len * d_model * tokens, with N the
parameters excluding position embeddings (Chinchilla / PaLM App. B accounting). The peak is the
float32 FLOP/s of a 2048^3 jnp.matmul on the same device, measured just before.

The target shape of issue 2 on one pinned core, XLA single-threaded:

  taskset -c 0 env XLA_FLAGS=--xla_cpu_multi_thread_eigen=false python -m benchmarks.train_step

Any model config: `--config=configs/gpt_tiny.py --batch_size=16 --seq_len=128`.
The last line is `tokens_per_s=<float>`.
"""

import functools
import statistics
import time

import jax
import jax.numpy as jnp
import ml_collections
from absl import app, flags
from ml_collections import config_flags

from tfjax.models.gpt import GPT, GPTConfig
from tfjax.tasks.lm import gpt_flops_per_token, lm_loss_fn
from tfjax.training import metrics, optimizer
from tfjax.training.state import TrainState
from tfjax.training.step import train_step

_BATCH = flags.DEFINE_integer("batch_size", 8, "Sequences per step.")
_SEQ = flags.DEFINE_integer("seq_len", 256, "Tokens per sequence.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps (after 2 warm-up steps).")
config_flags.DEFINE_config_file("config", None, "A configs/*.py file (default: issue-2 shape).")


def issue_shape() -> ml_collections.ConfigDict:
  """4 layers, d_model 256, 4 heads, d_ff 1024, vocab 8192, float32, AdamW, no dropout."""
  config = ml_collections.ConfigDict()
  config.model = dict(
    vocab_size=8192,
    max_len=256,
    num_layers=4,
    num_heads=4,
    d_model=256,
    d_ff=1024,
    dropout_rate=0.0,
    attention_dropout_rate=0.0,
  )
  config.train = dict(
    learning_rate=2.5e-4, warmup_steps=10, num_steps=1000, weight_decay=0.01, grad_clip_norm=1.0
  )
  return config


def main(argv: list[str]) -> None:
  del argv
  config = flags.FLAGS.config or issue_shape()
  model_config = GPTConfig.from_config(config.model)
  model_config = model_config.replace(dropout_rate=0.0, attention_dropout_rate=0.0)
  batch_size, seq_len = _BATCH.value, _SEQ.value
  model = GPT(model_config)
  tx, schedule = optimizer.make_optimizer(config.train)
  rng = jax.random.PRNGKey(0)
  tokens = jax.random.randint(rng, (batch_size, seq_len + 1), 0, model_config.vocab_size)
  batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
  state = TrainState.create(model.init(rng, batch["inputs"])["params"], tx, rng)
  step_fn = jax.jit(
    functools.partial(train_step, loss_fn=lm_loss_fn(model), optimizer=tx, schedule=schedule),
    donate_argnums=0,
  )

  start = time.perf_counter()
  compiled = step_fn.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  for _ in range(2):
    state, _ = compiled(state, batch)
  jax.block_until_ready(state)
  times = []
  for _ in range(_STEPS.value):
    start = time.perf_counter()
    state, step_metrics = compiled(state, batch)
    jax.block_until_ready((state, step_metrics))
    times.append(time.perf_counter() - start)
  step_s = statistics.median(times)

  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  flops_per_token = gpt_flops_per_token(model_config, state.params, seq_len)
  peak = metrics.measure_matmul_peak_flops(n=2048, dtype=jnp.float32)
  tokens_per_s = batch_size * seq_len / step_s
  print(f"device={jax.devices()[0].device_kind} params={num_params:,} batch={batch_size}x{seq_len}")
  print(f"compile_s={compile_s:.1f} step_s={step_s:.4f} (median of {len(times)})")
  print(
    f"matmul_peak_gflops={peak / 1e9:.1f} model_gflops_per_step="
    f"{flops_per_token * batch_size * seq_len / 1e9:.1f}"
  )
  print(f"mfu={metrics.mfu(tokens_per_s, flops_per_token, peak):.3f}")
  print(f"tokens_per_s={tokens_per_s:.1f}")


if __name__ == "__main__":
  app.run(main)
