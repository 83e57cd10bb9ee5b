"""`train_and_evaluate(config, workdir, task_cls)`: the whole run, top to bottom, for any task.

Sections: setup, data, model and state (fresh or resumed), loop (step, log, eval, checkpoint),
end (final eval, loss-curve PNG, the task's outputs and report). A run killed at any point
resumes from the latest checkpoint in `workdir` and continues with the same losses as an
uninterrupted run. What differs between GPT, BERT pre-training and fine-tuning is a `Task`
(tfjax/training/task.py): the caller passes its class (`tfjax.tasks.registry.train` looks it up
by `config.task`), so this module imports no task.
"""

import dataclasses
import functools
import json
import os
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from tfjax.nn import lora
from tfjax.training import checkpoint, faults, metrics, optimizer, plots, preemption, sharding
from tfjax.training import workdir as workdir_lib
from tfjax.training.orbax_echoes import orbax_echoes_to_debug
from tfjax.training.parallel import Parallel
from tfjax.training.state import TrainState
from tfjax.training.step import check_grad_accum_steps, without_frozen_gradients
from tfjax.training.task import MAY_CHANGE_ON_RESUME, Task


def validate_config(config: ml_collections.ConfigDict, task_cls: type[Task]) -> Task:
  """Checks the config before any data or compilation: the training settings, then the task's
  own (`task_cls(config)`); returns the task."""
  train = config.train
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
  optimizer.make_optimizer(train, config.model.get("d_model"))  # raises on bad values
  faults.check_policy(*_nonfinite_policy(train))
  return task_cls(config)


def _nonfinite_policy(train: ml_collections.ConfigDict) -> tuple[str, int]:
  """(train.on_nonfinite, train.max_consecutive_nonfinite), with the defaults of configs that
  predate them."""
  return train.get("on_nonfinite", "stop"), train.get("max_consecutive_nonfinite", 10)


def _newest_checkpoint(manager) -> str:
  """Which good state the user keeps, for the message of a run that stops."""
  latest = manager.latest_step()
  if latest is None:
    return "no checkpoint was written yet"
  return f"the newest checkpoint, step {latest} in {manager.directory}, is intact"


def _saved_config(workdir: str) -> dict | None:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def check_same_task(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Raises if `workdir` holds a run of another task (checked before any parameter shape)."""
  saved = _saved_config(workdir)
  # A workdir written before configs named their task is a language-model run.
  saved_task = None if saved is None else saved.get("task", "lm")
  if saved_task is not None and saved_task != config.get("task"):
    raise ValueError(
      f"{workdir} holds a run of task {saved_task!r}, not {config.get('task')!r}; use a fresh "
      "--workdir"
    )


def check_same_run(workdir: str, config: ml_collections.ConfigDict, task: Task) -> None:
  """Raises if `workdir/config.json` describes another model or data stream than `config`.

  Shapes alone cannot tell: num_heads or the activation can change with every parameter shape
  intact, and a different corpus can have the same vocabulary size.
  """
  saved = _saved_config(workdir)
  if saved is None:
    return
  current = json.loads(config.to_json_best_effort())
  lookup = lambda tree, key: functools.reduce(lambda d, k: (d or {}).get(k), key.split("."), tree)
  # Compare models field by field, defaults filled in (older config files lack newer keys).
  saved_model = dataclasses.asdict(task.model_config_cls.from_config(saved["model"]))
  current_model = dataclasses.asdict(task.model_config_cls.from_config(current["model"]))
  diffs = [
    f"model.{k}: checkpoint {saved_model[k]!r}, config {current_model[k]!r}"
    for k in saved_model
    if k not in MAY_CHANGE_ON_RESUME and saved_model[k] != current_model[k]
  ]
  # A key the saved config lacks is an option added since: the same run when it is unset now.
  same = lambda a, b: a == b or (a is None and not b)
  diffs += [
    f"{key}: checkpoint {lookup(saved, key)!r}, config {lookup(current, key)!r}"
    for key in task.run_identity
    if not same(lookup(saved, key), lookup(current, key))
  ]
  # The adapters of every task: a workdir written before config.lora existed has none.
  saved_lora, current_lora = (lora.LoRA.from_config(c.get("lora")) for c in (saved, current))
  if saved_lora != current_lora:
    diffs.append(f"lora: checkpoint {saved_lora}, config {current_lora}")
  if diffs:
    raise ValueError(
      f"{workdir} holds a run with another config ({'; '.join(diffs)}); use the same values "
      "to resume it, or a fresh --workdir"
    )


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, task_cls: type[Task]
) -> dict[str, float]:
  """Trains the task `task_cls` builds on `config`, as `config` says, in `workdir`; returns the
  final metrics. Raises `faults.RunStopped` when the run stops early with its last good
  checkpoint kept (a non-finite loss, SIGTERM or Ctrl-C, a full disk, another run in `workdir`).
  """
  parallel_cfg = config.get("parallel", ml_collections.ConfigDict())
  sharding.initialize_distributed(parallel_cfg)  # before any other JAX call
  task = validate_config(config, task_cls)
  # One run per workdir; orbax's repeated reports of one I/O failure stay out of the terminal.
  with workdir_lib.claim(workdir), orbax_echoes_to_debug():
    return _train_and_evaluate(config, workdir, task)


def _train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, task: Task
) -> dict[str, float]:
  # ---------------------------------------------------------------------------------- setup
  parallel_cfg = config.get("parallel", ml_collections.ConfigDict())
  train_cfg = config.train
  mesh = sharding.make_mesh(parallel_cfg.get("mesh", {"data": -1}))
  grad_accum_steps = train_cfg.get("grad_accum_steps", 1)
  sharding.check_batch(mesh, train_cfg.batch_size, grad_accum_steps)
  is_main = jax.process_index() == 0

  # ----------------------------------------------------------------------------------- data
  data = task.prepare_data(workdir, jax.process_index(), jax.process_count())
  train_iter = data.train_iter

  # ------------------------------------------------------------------------ model and state
  mode = parallel_cfg.get("mode", "jit")
  train_model = task.model(activation_sharding=sharding.activation_sharding(mode, mesh))
  trainable = task.trainable()  # None: every parameter; with LoRA the adapters and the head
  tx, schedule = optimizer.make_optimizer(
    train_cfg, config.model.get("d_model"), trainable=trainable
  )
  loss_fn = task.loss_fn(train_model)
  if trainable is not None:
    loss_fn = without_frozen_gradients(loss_fn, trainable)
  init_rng, state_rng = jax.random.split(jax.random.PRNGKey(train_cfg.seed))

  def init_state() -> TrainState:
    return TrainState.create(task.init_params(init_rng), tx, state_rng)

  parallel = Parallel(
    mode,
    mesh,
    parallel_cfg.get("rules", sharding.DEFAULT_RULES),
    init_fn=init_state,
    loss_fn=loss_fn,
    optimizer=tx,
    schedule=schedule,
    grad_accum_steps=grad_accum_steps,
    param_axes=task.param_axes,
  )
  manager = checkpoint.checkpoint_manager(workdir, train_cfg.max_to_keep)
  if manager.latest_step() is not None or checkpoint.set_aside(manager):
    check_same_task(workdir, config)
    # The newest readable checkpoint, restored with this mesh's shardings.
    saved = checkpoint.restore_newest_readable(manager, parallel.abstract_state(), train_iter)
    check_same_run(workdir, config, task)  # what parameter shapes cannot tell
    state = parallel.from_saved(saved)
    logging.warning("Resumed from step %d in %s", int(saved.step), workdir)
  else:
    state = parallel.init_state()
    fresh = parallel.to_saved(state)
    base = lora.base_params(fresh.params)  # what a pre-trained checkpoint holds: no adapters
    params = task.initial_params(base)
    if params is not base:  # e.g. pre-trained weights for fine-tuning
      params = lora.with_adapters(params, fresh.params)  # LoRA: the fresh adapters beside them
      state = parallel.from_saved(fresh.replace(params=parallel.place_params(params)))
  start_step = int(jax.device_get(parallel.to_saved(state).step))
  if is_main:  # only now that a checkpoint fits: a failed resume leaves the workdir as it was
    path = os.path.join(workdir, "config.json")
    with open(path + ".tmp", "w") as f:
      f.write(config.to_json_best_effort(indent=2))
    os.replace(path + ".tmp", path)  # other processes may be reading it (check_same_run)
    data.save_files(workdir)

  placed_eval_data = [parallel.put_global_batch(batch) for batch in data.eval_batches]

  def evaluate(params) -> dict[str, float]:
    """Every metric averaged over the eval batches, weighted by their token counts."""
    results = jax.device_get([parallel.eval_step(params, b) for b in placed_eval_data])
    num_tokens = np.concatenate([np.ravel(m["num_tokens"]) for m in results])
    means = {
      name: float(
        np.sum(np.concatenate([np.ravel(m[name]) for m in results]) * num_tokens)
        / max(np.sum(num_tokens), 1.0)
      )
      for name in results[0]
      if name != "num_tokens"
    }
    return task.summarize(means)

  flops_per_token = task.flops_per_token(parallel.abstract_state().params)
  peak_flops = metrics.measure_matmul_peak_flops()
  tokens_per_step = train_cfg.batch_size * task.seq_len

  # ----------------------------------------------------------------------------------- loop
  writer = metrics.MetricWriter(workdir)
  writer.truncate_after(start_step)
  progress = metrics.ProgressBar(train_cfg.num_steps, initial_step=start_step)
  on_nonfinite, max_consecutive_nonfinite = _nonfinite_policy(train_cfg)
  window: list[dict] = []
  last_eval = None
  timed_steps, window_start = 0, time.perf_counter()
  stop = preemption.StopRequests().install()  # SIGTERM / Ctrl-C: save this step, then stop
  try:
    for step in range(start_step + 1, train_cfg.num_steps + 1):
      state, step_metrics = parallel.train_step(state, parallel.put_batch(next(train_iter)))
      window.append(step_metrics)
      timed_steps += 1
      if step == start_step + 1:  # leave compilation out of the throughput
        jax.block_until_ready(state)
        timed_steps, window_start = 0, time.perf_counter()
      last = step == train_cfg.num_steps
      stopping = stop.requested(step)

      if step % train_cfg.log_every == 0 or last or stopping:
        fetched = jax.device_get(window)  # waits for the steps of this window
        # Before anything is saved from this state (checkpoint_every is a multiple of log_every).
        faults.check_window(
          fetched,
          step - len(fetched) + 1,
          on_nonfinite=on_nonfinite,
          max_consecutive_nonfinite=max_consecutive_nonfinite,
          kept=_newest_checkpoint(manager),
        )
        elapsed = time.perf_counter() - window_start
        summary = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
        for name in ("num_tokens", "skipped_in_a_row"):
          summary.pop(name, None)
        if "skipped_updates" in summary:  # the run's count so far, not a window's mean
          summary["skipped_updates"] = float(fetched[-1]["skipped_updates"])
        summary = task.summarize(summary)
        if timed_steps:
          summary["tokens_per_s"] = tokens_per_step * timed_steps / elapsed
          if flops_per_token:
            summary["mfu"] = metrics.mfu(summary["tokens_per_s"], flops_per_token, peak_flops)
        writer.write(step, summary, "train")
        progress.update(step, loss=summary["loss"], tokens_per_s=summary.get("tokens_per_s"))
        window, timed_steps, window_start = [], 0, time.perf_counter()

      if step % train_cfg.eval_every == 0 or last:
        last_eval = evaluate(state.params)
        writer.write(step, last_eval, "eval")
        timed_steps, window_start = 0, time.perf_counter()  # eval is not training throughput

      if step % train_cfg.checkpoint_every == 0 or last or stopping:
        checkpoint.save(manager, step, parallel.to_saved(state), train_iter)
      if stopping:
        checkpoint.wait_until_finished(manager)
        raise faults.RunStopped(
          f"{stop.name} after step {step}: saved checkpoint {step} in {manager.directory}; run "
          "the same command to resume from it",
          exit_code=stop.exit_code,
        )
  finally:  # also on an error: finish the checkpoint in flight, flush the logs
    stop.uninstall()
    progress.close()
    try:
      checkpoint.wait_until_finished(manager)
    finally:
      writer.close()

  # ------------------------------------------------------------------------------------ end
  final = {f"eval_{k}": v for k, v in (last_eval or evaluate(state.params)).items()}
  final_state = parallel.to_saved(state)
  final["step"] = int(jax.device_get(final_state.step))
  if is_main:  # before the task's outputs: a failing one leaves the curve
    plots.plot_loss_curves(metrics.read_metrics(workdir), os.path.join(workdir, "loss.png"))
  report = task.finish(final_state.params, workdir, final, data)
  if is_main:
    with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
      json.dump(final, f, indent=2)
    report.append(f"loss curve: {os.path.join(workdir, 'loss.png')}")
    print("\n".join(report))  # the run's report to the user
  return final
