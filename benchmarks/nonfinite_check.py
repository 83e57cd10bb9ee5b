r"""What skipping non-finite updates costs per training step: the GPT step with
`train.on_nonfinite="skip"` (`optimizer.skip_nonfinite`, i.e. optax.apply_if_finite: an
all-finite reduction over the gradients and a `lax.cond`) against "stop" (the default, which only
reads the metrics logging fetches), in interleaved rounds in one process; the median of the
per-round ratios.

  taskset -c 0 env XLA_FLAGS=--xla_cpu_multi_thread_eigen=false python -m benchmarks.nonfinite_check

The shape is benchmarks/train_step.py's (the peer benchmark's). The last line is
`with_check/without steps_per_s ratio=<float>`: 1.0 is free; this machine's noise is a few %.
"""

import functools
import statistics
import time

import jax
from absl import app, flags

from benchmarks.train_step import issue_shape
from tfjax.models.gpt import GPT, GPTConfig
from tfjax.tasks.lm import lm_loss_fn
from tfjax.training import optimizer
from tfjax.training.state import TrainState
from tfjax.training.step import train_step

# --batch_size and --seq_len are benchmarks/train_step.py's flags.
_ROUNDS = flags.DEFINE_integer("rounds", 15, "Interleaved rounds.")
_ROUND_STEPS = flags.DEFINE_integer("round_steps", 5, "Timed steps of each variant per round.")


def compiled_step(config, model: GPT, batch: dict, check: bool):
  """(compiled step, fresh state) with or without the non-finite check."""
  policy = "skip" if check else "stop"
  tx, schedule = optimizer.make_optimizer({**config.train, "on_nonfinite": policy})
  rng = jax.random.PRNGKey(0)
  state = TrainState.create(model.init(rng, batch["inputs"])["params"], tx, rng)
  step = functools.partial(train_step, loss_fn=lm_loss_fn(model), optimizer=tx, schedule=schedule)
  return jax.jit(step, donate_argnums=0).lower(state, batch).compile(), state


def steps_per_s(compiled, state, batch, num_steps: int):
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(num_steps):
    state, step_metrics = compiled(state, batch)
  jax.block_until_ready((state, step_metrics))
  return num_steps / (time.perf_counter() - start), state


def main(argv: list[str]) -> None:
  del argv
  config = issue_shape()
  model = GPT(GPTConfig.from_config(config.model))
  rng = jax.random.PRNGKey(0)
  batch_size, seq_len = flags.FLAGS.batch_size, flags.FLAGS.seq_len
  tokens = jax.random.randint(rng, (batch_size, seq_len + 1), 0, config.model.vocab_size)
  batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
  variants = {check: compiled_step(config, model, batch, check) for check in (True, False)}
  states = {check: steps_per_s(fn, state, batch, 2)[1] for check, (fn, state) in variants.items()}
  ratios, rates = [], {True: [], False: []}
  for round_index in range(_ROUNDS.value):
    order = (True, False) if round_index % 2 == 0 else (False, True)
    for check in order:
      compiled = variants[check][0]
      rate, states[check] = steps_per_s(compiled, states[check], batch, _ROUND_STEPS.value)
      rates[check].append(rate)
    ratios.append(rates[True][-1] / rates[False][-1])
  print(
    f"steps_per_s with check {statistics.median(rates[True]):.3f}, without "
    f"{statistics.median(rates[False]):.3f} (medians of {_ROUNDS.value} rounds of "
    f"{_ROUND_STEPS.value} steps, batch {batch_size}x{seq_len})"
  )
  print(f"per-round ratios: min {min(ratios):.3f}, max {max(ratios):.3f}")
  print(f"with_check/without steps_per_s ratio={statistics.median(ratios):.3f}")


if __name__ == "__main__":
  app.run(main)
