"""`train_and_evaluate(config, workdir)`: the whole run, top to bottom.

Sections: setup, data, model and state (fresh or resumed), loop (step, log, eval, checkpoint),
end (final eval, loss-curve PNG, samples). A run killed at any point resumes from the latest
checkpoint in `workdir` and continues with the same losses as an uninterrupted run.
"""

import dataclasses
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
from tfjax.training import checkpoint, metrics, optimizer, plots, sharding
from tfjax.training.lm import gpt_flops_per_token, lm_loss_fn
from tfjax.training.parallel import Parallel
from tfjax.training.state import TrainState
from tfjax.training.step import check_grad_accum_steps


def validate_config(config: ml_collections.ConfigDict) -> GPTConfig:
  """Checks the config before any data or compilation; returns the model config."""
  model_config = GPTConfig.from_config(config.model)
  seq_len, train, sample = config.data.seq_len, config.train, config.sample
  if seq_len > model_config.max_len:
    raise ValueError(
      f"data.seq_len={seq_len} is longer than the position table (model.max_len="
      f"{model_config.max_len}); lower data.seq_len or raise model.max_len"
    )
  for name in ("batch_size", "num_steps", "log_every", "eval_every", "eval_batches"):
    if train[name] < 1:
      raise ValueError(f"train.{name}={train[name]} must be >= 1")
  check_grad_accum_steps(train.batch_size, train.get("grad_accum_steps", 1))
  mode = config.get("parallel", {}).get("mode", "jit")
  if mode not in sharding.MODES:
    raise ValueError(f"parallel.mode={mode!r} is unknown; choose one of {sharding.MODES}")
  if train.checkpoint_every < 1 or train.checkpoint_every % train.log_every:
    raise ValueError(
      f"train.checkpoint_every={train.checkpoint_every} must be a positive multiple of "
      f"train.log_every={train.log_every}, so that a resumed run logs the same step windows"
    )
  optimizer.make_optimizer(train)  # raises on bad optimizer or schedule values
  if not 1 <= sample.max_new_tokens < model_config.max_len:
    raise ValueError(
      f"sample.max_new_tokens={sample.max_new_tokens} must be in [1, model.max_len="
      f"{model_config.max_len}) to leave room for the prompt"
    )
  if not sample.prompts or not all(sample.prompts):
    raise ValueError("sample.prompts must be non-empty strings, e.g. ('The city of',)")
  if sample.temperature < 0 or sample.top_k < 0 or not 0 < sample.top_p <= 1:
    raise ValueError(
      f"sample.temperature={sample.temperature} (>= 0), sample.top_k={sample.top_k} (>= 0) "
      f"and sample.top_p={sample.top_p} (in (0, 1]) are out of range"
    )
  return model_config


# Settings a resumed run must share with the checkpoint's run, beyond the model's architecture.
_RUN_IDENTITY = ("data.name", "data.text_field", "data.train_split", "data.seq_len", "train.seed")
# Model settings that may change on resume: they change no parameter and no data.
_MAY_CHANGE_ON_RESUME = ("dtype", "dropout_rate", "attention_dropout_rate", "remat_policy")


def check_same_run(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Raises if `workdir/config.json` describes another model or data stream than `config`.

  Shapes alone cannot tell: num_heads or the activation can change with every parameter shape
  intact, and a different corpus can have the same vocabulary size.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    saved = json.load(f)
  current = json.loads(config.to_json_best_effort())
  # Compare models field by field, defaults filled in (older config files lack newer keys).
  saved_model = dataclasses.asdict(GPTConfig.from_config(saved["model"]))
  current_model = dataclasses.asdict(GPTConfig.from_config(current["model"]))
  diffs = [
    f"model.{k}: checkpoint {saved_model[k]!r}, config {current_model[k]!r}"
    for k in saved_model
    if k not in _MAY_CHANGE_ON_RESUME and saved_model[k] != current_model[k]
  ]
  lookup = lambda tree, key: functools.reduce(lambda d, k: (d or {}).get(k), key.split("."), tree)
  diffs += [
    f"{key}: checkpoint {lookup(saved, key)!r}, config {lookup(current, key)!r}"
    for key in _RUN_IDENTITY
    if lookup(saved, key) != lookup(current, key)
  ]
  if diffs:
    raise ValueError(
      f"{workdir} holds a run with another config ({'; '.join(diffs)}); use the same values "
      "to resume it, or a fresh --workdir"
    )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains a GPT language model as `config` says, in `workdir`; returns the final metrics."""
  # ---------------------------------------------------------------------------------- setup
  parallel_cfg = config.get("parallel", ml_collections.ConfigDict())
  sharding.initialize_distributed(parallel_cfg)  # before any other JAX call
  model_config = validate_config(config)
  train_cfg = config.train
  mesh = sharding.make_mesh(parallel_cfg.get("mesh", {"data": -1}))
  grad_accum_steps = train_cfg.get("grad_accum_steps", 1)
  sharding.check_batch(mesh, train_cfg.batch_size, grad_accum_steps)
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
  mode = parallel_cfg.get("mode", "jit")
  train_model = GPT(model_config, activation_sharding=sharding.activation_sharding(mode, mesh))
  tx, schedule = optimizer.make_optimizer(train_cfg)
  init_rng, state_rng = jax.random.split(jax.random.PRNGKey(train_cfg.seed))

  def init_state() -> TrainState:
    dummy = jnp.zeros((1, seq_len), jnp.int32)
    return TrainState.create(model.init(init_rng, dummy)["params"], tx, state_rng)

  parallel = Parallel(
    mode,
    mesh,
    parallel_cfg.get("rules", sharding.DEFAULT_RULES),
    loss_fn=lm_loss_fn(train_model),
    optimizer=tx,
    schedule=schedule,
    grad_accum_steps=grad_accum_steps,
  )
  manager = checkpoint.checkpoint_manager(workdir, train_cfg.max_to_keep)
  if manager.latest_step() is not None:
    abstract_state = parallel.abstract_state(init_state)  # with this mesh's shardings
    checkpoint.check_params_fit(manager, manager.latest_step(), abstract_state.params)
    check_same_run(workdir, config)  # what shapes cannot tell
    state = parallel.from_saved(checkpoint.restore(manager, abstract_state, train_iter))
    logging.warning("Resumed from step %d in %s", int(state.step), workdir)
  else:
    state = parallel.init_state(init_state)
  start_step = int(jax.device_get(parallel.to_saved(state).step))
  if is_main:  # only now that a checkpoint fits: a failed resume leaves the workdir as it was
    path = os.path.join(workdir, "config.json")
    with open(path + ".tmp", "w") as f:
      f.write(config.to_json_best_effort(indent=2))
    os.replace(path + ".tmp", path)  # other processes may be reading it (check_same_run)
    shutil.copyfile(data.tokenizer.model_path, os.path.join(workdir, "tokenizer.model"))

  placed_eval_data = [parallel.put_global_batch(batch) for batch in eval_data]

  def evaluate(params) -> dict[str, float]:
    results = jax.device_get([parallel.eval_step(params, b) for b in placed_eval_data])
    losses = np.concatenate([np.ravel(m["loss"]) for m in results])
    num_tokens = np.concatenate([np.ravel(m["num_tokens"]) for m in results])
    loss = float(np.sum(losses * num_tokens) / np.sum(num_tokens))
    return {"loss": loss, "perplexity": math.exp(loss)}

  abstract_params = jax.eval_shape(init_state).params
  flops_per_token = gpt_flops_per_token(model_config, abstract_params, seq_len)
  peak_flops = metrics.measure_matmul_peak_flops()
  tokens_per_step = train_cfg.batch_size * seq_len

  # ----------------------------------------------------------------------------------- loop
  writer = metrics.MetricWriter(workdir)
  writer.truncate_after(start_step)
  progress = metrics.ProgressBar(train_cfg.num_steps, initial_step=start_step)
  window: list[dict] = []
  last_eval = None
  timed_steps, window_start = 0, time.perf_counter()
  try:
    for step in range(start_step + 1, train_cfg.num_steps + 1):
      state, step_metrics = parallel.train_step(state, parallel.put_batch(next(train_iter)))
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
        last_eval = evaluate(state.params)
        writer.write(step, last_eval, "eval")
        timed_steps, window_start = 0, time.perf_counter()  # eval is not training throughput

      if step % train_cfg.checkpoint_every == 0 or last:
        checkpoint.save(manager, step, parallel.to_saved(state), train_iter)
  finally:  # also on an error or Ctrl-C: finish the checkpoint in flight, flush the logs
    progress.close()
    manager.wait_until_finished()
    writer.close()

  # ------------------------------------------------------------------------------------ end
  final = {f"eval_{k}": v for k, v in (last_eval or evaluate(state.params)).items()}
  eval_targets = np.concatenate([np.ravel(batch["targets"]) for batch in eval_data])
  final["unigram_perplexity"] = lm_data.unigram_perplexity(
    train_tokens, eval_targets, model_config.vocab_size
  )
  final_state = parallel.to_saved(state)
  final["step"] = int(jax.device_get(final_state.step))
  if is_main:
    plots.plot_loss_curves(metrics.read_metrics(workdir), os.path.join(workdir, "loss.png"))
    with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
      json.dump(final, f, indent=2)
  sample_cfg = config.sample
  samples = decoding.complete_texts(
    model_config,
    final_state.params,
    data.tokenizer,
    sample_cfg.prompts,
    max_new_tokens=sample_cfg.max_new_tokens,
    seed=sample_cfg.seed,
    temperature=sample_cfg.temperature,
    top_k=sample_cfg.top_k,
    top_p=sample_cfg.top_p,
  )
  if is_main:
    with open(os.path.join(workdir, "samples.txt"), "w") as f:
      f.write("\n\n".join(samples) + "\n")
    report = [
      f"step {final['step']}: validation loss {final['eval_loss']:.3f}, "
      f"perplexity {final['eval_perplexity']:.1f} "
      f"(unigram model on the same tokens: {final['unigram_perplexity']:.1f})",
      f"loss curve: {os.path.join(workdir, 'loss.png')}",
      "samples:",
      *(f"  {s!r}" for s in samples),
    ]
    print("\n".join(report))  # the run's report to the user
  return final
