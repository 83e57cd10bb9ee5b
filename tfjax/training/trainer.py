"""`train_and_evaluate(config, workdir)`: the whole run, top to bottom.

Sections: setup, data, model and state (fresh or resumed), loop (step, log, eval, checkpoint),
end (final eval, loss-curve PNG, samples). A run killed at any point resumes from the latest
checkpoint in `workdir` and continues with the same losses as an uninterrupted run.
"""

import functools
import json
import math
import os
import shutil
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from tfjax import decoding
from tfjax.data import lm as lm_data
from tfjax.models.gpt import GPT, GPTConfig
from tfjax.training import checkpoint, metrics, optimizer, plots
from tfjax.training.lm import gpt_flops_per_token, lm_loss_fn
from tfjax.training.state import TrainState
from tfjax.training.step import eval_step, train_step


def validate_config(config: ml_collections.ConfigDict) -> GPTConfig:
  """Checks the config before any data or compilation; returns the model config."""
  model_config = GPTConfig.from_config(config.model)
  seq_len, train = config.data.seq_len, config.train
  if seq_len > model_config.max_len:
    raise ValueError(
      f"data.seq_len={seq_len} is longer than the position table (model.max_len="
      f"{model_config.max_len}); lower data.seq_len or raise model.max_len"
    )
  for name in ("batch_size", "num_steps", "log_every", "eval_every", "checkpoint_every"):
    if train[name] < 1:
      raise ValueError(f"train.{name}={train[name]} must be >= 1")
  if train.batch_size % jax.process_count():
    raise ValueError(
      f"train.batch_size={train.batch_size} is not divisible by the {jax.process_count()} "
      "processes; choose a multiple"
    )
  return model_config


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains a GPT language model as `config` says, in `workdir`; returns the final metrics."""
  # ---------------------------------------------------------------------------------- setup
  model_config = validate_config(config)
  train_cfg = config.train
  os.makedirs(workdir, exist_ok=True)
  is_main = jax.process_index() == 0

  # ----------------------------------------------------------------------------------- data
  data = lm_data.prepare_lm_data(config.data, vocab_size=model_config.vocab_size)
  train_tokens = data.tokens(config.data.train_split)
  eval_tokens = data.tokens(config.data.eval_split)
  seq_len = config.data.seq_len
  train_iter = lm_data.train_iterator(
    train_tokens,
    seq_len,
    train_cfg.batch_size // jax.process_count(),
    seed=train_cfg.seed,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  eval_data = lm_data.eval_batches(
    eval_tokens, seq_len, train_cfg.batch_size, train_cfg.eval_batches
  )

  # ------------------------------------------------------------------------ model and state
  model = GPT(model_config)
  tx, schedule = optimizer.make_optimizer(train_cfg)
  init_rng, state_rng = jax.random.split(jax.random.PRNGKey(train_cfg.seed))

  def init_state() -> TrainState:
    dummy = jnp.zeros((1, seq_len), jnp.int32)
    return TrainState.create(model.init(init_rng, dummy)["params"], tx, state_rng)

  manager = checkpoint.checkpoint_manager(workdir, train_cfg.max_to_keep)
  if manager.latest_step() is not None:
    state = checkpoint.restore(manager, jax.eval_shape(init_state), train_iter)
    logging.warning("Resumed from step %d in %s", int(state.step), workdir)
  else:
    state = jax.jit(init_state)()
  start_step = int(state.step)
  if is_main:  # only now that a checkpoint fits: a failed resume leaves the workdir as it was
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
    shutil.copyfile(data.tokenizer.model_path, os.path.join(workdir, "tokenizer.model"))

  loss_fn = lm_loss_fn(model)
  jit_train_step = jax.jit(
    functools.partial(train_step, loss_fn=loss_fn, optimizer=tx, schedule=schedule),
    donate_argnums=0,
  )
  jit_eval_step = jax.jit(functools.partial(eval_step, loss_fn=loss_fn))

  def evaluate(params) -> dict[str, float]:
    losses = [jit_eval_step(params, batch) for batch in eval_data]
    totals = jax.device_get(losses)
    num_tokens = sum(float(m["num_tokens"]) for m in totals)
    loss = sum(float(m["loss"]) * float(m["num_tokens"]) for m in totals) / num_tokens
    return {"loss": loss, "perplexity": math.exp(loss)}

  flops_per_token = gpt_flops_per_token(model_config, state.params, seq_len)
  peak_flops = metrics.measure_matmul_peak_flops()
  tokens_per_step = train_cfg.batch_size * seq_len

  # ----------------------------------------------------------------------------------- loop
  writer = metrics.MetricWriter(workdir)
  writer.truncate_after(start_step)
  progress = metrics.ProgressBar(train_cfg.num_steps, initial_step=start_step)
  window: list[dict] = []
  timed_steps, window_start = 0, time.perf_counter()
  for step in range(start_step + 1, train_cfg.num_steps + 1):
    state, step_metrics = jit_train_step(state, next(train_iter))
    window.append(step_metrics)
    timed_steps += 1
    if step == start_step + 1:  # leave compilation out of the throughput
      jax.block_until_ready(state)
      timed_steps, window_start = 0, time.perf_counter()
    last = step == train_cfg.num_steps

    if step % train_cfg.log_every == 0 or last:
      fetched = jax.device_get(window)  # waits for the steps of this window
      elapsed = time.perf_counter() - window_start
      summary = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
      summary.pop("num_tokens", None)
      summary["perplexity"] = math.exp(min(summary["loss"], 50.0))
      if timed_steps:
        summary["tokens_per_s"] = tokens_per_step * timed_steps / elapsed
        summary["mfu"] = metrics.mfu(summary["tokens_per_s"], flops_per_token, peak_flops)
      writer.write(step, summary, "train")
      progress.update(step, loss=summary["loss"], tokens_per_s=summary.get("tokens_per_s"))
      window, timed_steps, window_start = [], 0, time.perf_counter()

    if step % train_cfg.eval_every == 0 or last:
      writer.write(step, evaluate(state.params), "eval")
      timed_steps, window_start = 0, time.perf_counter()  # eval is not training throughput

    if step % train_cfg.checkpoint_every == 0 or last:
      checkpoint.save(manager, step, state, train_iter)
  progress.close()
  manager.wait_until_finished()
  writer.flush()

  # ------------------------------------------------------------------------------------ end
  final = {f"eval_{k}": v for k, v in evaluate(state.params).items()}
  eval_targets = np.concatenate([np.ravel(batch["targets"]) for batch in eval_data])
  final["unigram_perplexity"] = lm_data.unigram_perplexity(
    train_tokens, eval_targets, model_config.vocab_size
  )
  final["step"] = int(state.step)
  sample_cfg = config.sample
  samples = decoding.complete_texts(
    model_config,
    state.params,
    data.tokenizer,
    sample_cfg.prompts,
    max_new_tokens=sample_cfg.max_new_tokens,
    seed=sample_cfg.seed,
    temperature=sample_cfg.temperature,
    top_k=sample_cfg.top_k,
    top_p=sample_cfg.top_p,
  )
  if is_main:
    plots.plot_loss_curves(metrics.read_metrics(workdir), os.path.join(workdir, "loss.png"))
    with open(os.path.join(workdir, "samples.txt"), "w") as f:
      f.write("\n\n".join(samples) + "\n")
    with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
      json.dump(final, f, indent=2)
    report = [
      f"step {final['step']}: validation loss {final['eval_loss']:.3f}, "
      f"perplexity {final['eval_perplexity']:.1f} "
      f"(unigram model on the same tokens: {final['unigram_perplexity']:.1f})",
      f"loss curve: {os.path.join(workdir, 'loss.png')}",
      "samples:",
      *(f"  {s!r}" for s in samples),
    ]
    print("\n".join(report))  # the run's report to the user
  writer.close()
  return final
