r"""Compile time, step time and per-device memory of the parallel train step (issue 3).

For gpt_tiny shapes (configs/gpt_tiny.py, batch 16 x 128) and GPT-2 small shapes
(configs/gpt2_small.py, batch 8 x 128), on 1 and 8 simulated CPU devices:

1. each parallel mode (jit, shard_map, pmap; and on 8 devices jit with fsdp=8): compile time
   (lower + compile), median step time and the compiled step's memory per device from
   `compiled.memory_analysis()` (argument / output / temp bytes);
2. memory per device with and without FSDP (mesh data=8 vs fsdp=8; and data=1) and with and
   without remat (remat_policy none / full / dots_no_batch, all with scan_layers=True: on
   XLA:CPU remat lowers the peak only under scan, see tfjax/models/gpt.py), compiled only;
3. the issue's target: FSDP on 8 devices holds at most 1/4 of the replicated parameter +
   optimizer bytes per device (state bytes from the shardings; from the arrays' addressable
   shards too where the states fit in memory), printed as PASS/FAIL with the numbers.

The default run (both models, 1 and 8 devices, ~4-5 minutes on a 2-core CPU):

  python -m benchmarks.parallel

Smaller runs:

  python -m benchmarks.parallel --models=tiny --devices=8 --modes=jit,shard_map --steps=10
  python -m benchmarks.parallel --models=gpt2_small --gpt2_small_steps=0   # compile only

Each device count runs in its own child process (the CPU device count is fixed when JAX
starts; the parent sets --xla_force_host_platform_device_count for it). A step is run only
where its estimated host memory (peak per device x devices) fits --max_host_gib; otherwise the
row is compiled only and says so: GPT-2 small replicated on 8 simulated devices needs ~21 GiB.
Timings on a shared 2-core CPU are noisy, and 8 simulated devices share the same 2 cores: read
medians and ratios from one run, not absolute speeds. The last line is key=value pairs.
"""

import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from tfjax.models import gpt
from tfjax.models.gpt import GPT, GPTConfig
from tfjax.tasks.lm import lm_loss_fn
from tfjax.training import optimizer, sharding
from tfjax.training.parallel import Parallel
from tfjax.training.state import TrainState

_MODELS = flags.DEFINE_list("models", ["tiny", "gpt2_small"], "Models: tiny, gpt2_small.")
_MODES = flags.DEFINE_list("modes", ["jit", "shard_map", "pmap"], "Parallel modes to time.")
_DEVICES = flags.DEFINE_list("devices", ["1", "8"], "Simulated CPU device counts.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per gpt_tiny row (after 1 warm-up).")
_GPT2_STEPS = flags.DEFINE_integer(
  "gpt2_small_steps", 2, "Timed steps per GPT-2 small row that fits in memory (0: compile only)."
)
_GPT2_STEP_MODES = flags.DEFINE_list(
  "gpt2_small_step_modes", ["jit"], "Modes whose GPT-2 small rows run steps (~10 s each here)."
)
_MEMORY = flags.DEFINE_bool("memory", True, "The FSDP x remat memory table and FSDP check.")
_MAX_HOST_GIB = flags.DEFINE_float(
  "max_host_gib", 8.0, "Run steps only where peak bytes per device x devices fit this."
)
_CHILD = flags.DEFINE_string("child_json", "", "Internal: run one device count, write JSON here.")

FORWARDED = (_MODELS, _MODES, _STEPS, _GPT2_STEPS, _GPT2_STEP_MODES, _MEMORY, _MAX_HOST_GIB)

# name -> (config module, global batch, sequence length)
SHAPES = {"tiny": ("configs.gpt_tiny", 16, 128), "gpt2_small": ("configs.gpt2_small", 8, 128)}
REMAT_POLICIES = ("none", "full", "dots_no_batch")
MIB = 2**20


# ------------------------------------------------------------------------------ child: measure


def build(name: str, mode: str, mesh_config: dict, devices: list, **model_changes: Any):
  """A Parallel for one model / mode / mesh, and its abstract and host step inputs."""
  module, batch_size, seq_len = SHAPES[name]
  config = importlib.import_module(module).get_config()
  model_config = GPTConfig.from_config(config.model).replace(
    dropout_rate=0.0, attention_dropout_rate=0.0, **model_changes
  )
  model = GPT(model_config)
  tx, schedule = optimizer.make_optimizer(config.train)
  init_rng, state_rng = jax.random.split(jax.random.PRNGKey(0))

  def init_fn() -> TrainState:
    params = model.init(init_rng, jnp.zeros((1, seq_len), jnp.int32))["params"]
    return TrainState.create(params, tx, state_rng)

  mesh = sharding.make_mesh(mesh_config, devices)
  sharding.check_batch(mesh, batch_size)
  train_model = GPT(model_config, activation_sharding=sharding.activation_sharding(mode, mesh))
  parallel = Parallel(
    mode,
    mesh,
    sharding.DEFAULT_RULES,
    init_fn=init_fn,
    loss_fn=lm_loss_fn(train_model),
    optimizer=tx,
    schedule=schedule,
    param_axes=gpt.PARAM_AXES,
  )
  state = parallel.abstract_state()
  if mode == "pmap":  # a leading device axis, as Parallel.from_saved / put_batch make it
    n = len(devices)
    state = jax.tree.map(lambda s: jax.ShapeDtypeStruct((n, *s.shape), s.dtype), state)
    batch_shape, batch_sharding = (n, batch_size // n, seq_len), None
  else:
    batch_shape, batch_sharding = (batch_size, seq_len), sharding.batch_sharding(mesh)
  batch = {
    key: jax.ShapeDtypeStruct(batch_shape, jnp.int32, sharding=batch_sharding)
    for key in ("inputs", "targets")
  }
  tokens = np.random.default_rng(0).integers(0, model_config.vocab_size, (batch_size, seq_len + 1))
  host_batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
  return parallel, state, batch, jax.tree.map(lambda x: x.astype(np.int32), host_batch)


def state_bytes_per_device(abstract_state: Any) -> int:
  """Parameter + optimizer + step/rng bytes on one device, from each leaf's sharding."""
  total = 0
  for leaf in jax.tree.leaves(abstract_state):
    shape = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
    total += math.prod(shape) * leaf.dtype.itemsize
  return total


def addressable_bytes_on_device_0(state: Any) -> int:
  """The same, counted from a real state's addressable shards on the first device."""
  device = jax.devices()[0]
  return sum(
    shard.data.nbytes
    for x in jax.tree.leaves(state)
    for shard in x.addressable_shards
    if shard.device == device
  )


def compile_step(parallel: Any, state: Any, batch: Any) -> tuple[Any, float, dict]:
  """Lower + compile the mode's train step for abstract inputs; its memory per device."""
  # Parallel has no public accessor for its (uncompiled) step; the benchmark needs `.lower`.
  step_fn = parallel.train_step_fn()
  start = time.perf_counter()
  compiled = step_fn.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  stats = compiled.memory_analysis()
  memory = {
    "argument": stats.argument_size_in_bytes,
    "output": stats.output_size_in_bytes,
    "alias": stats.alias_size_in_bytes,
    "temp": stats.temp_size_in_bytes,
  }
  # Everything live at once at worst: inputs, outputs not written in place, temporaries.
  memory["peak"] = memory["argument"] + memory["output"] - memory["alias"] + memory["temp"]
  return compiled, compile_s, memory


def time_steps(parallel: Any, compiled: Any, host_batch: dict, steps: int) -> dict:
  """Median wall time of `steps` steps after one warm-up step, blocking on every step."""
  start = time.perf_counter()
  state = parallel.init_state()
  batch = parallel.put_batch(host_batch)
  jax.block_until_ready((state, batch))
  init_s = time.perf_counter() - start
  state, metrics = compiled(state, batch)  # warm-up
  jax.block_until_ready(state)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - start)
  loss = float(jax.device_get(metrics["loss"]).reshape(-1)[0])
  return {"step_s": statistics.median(times), "steps": steps, "init_s": init_s, "loss": loss}


def measure_modes(num_devices: int) -> list[dict]:
  rows = []
  mesh_configs = [(mode, {"data": -1}) for mode in _MODES.value]
  if num_devices > 1 and "jit" in _MODES.value:
    mesh_configs.append(("jit", {"fsdp": -1}))
  for name in _MODELS.value:
    for mode, mesh_config in mesh_configs:
      parallel, state, batch, host_batch = build(name, mode, mesh_config, jax.devices())
      compiled, compile_s, memory = compile_step(parallel, state, batch)
      steps = _STEPS.value
      if name == "gpt2_small":
        steps = _GPT2_STEPS.value if mode in _GPT2_STEP_MODES.value else 0
      row = {
        "model": name,
        "devices": num_devices,
        "mode": mode,
        "mesh": "x".join(f"{k}={v}" for k, v in parallel.mesh.shape.items() if v > 1) or "1",
        "compile_s": compile_s,
        "memory": memory,
        "state_bytes": state_bytes_per_device(parallel.abstract_state()),
        "host_gib": memory["peak"] * num_devices / 2**30,
        "step_s": None,
      }
      if steps > 0 and row["host_gib"] <= _MAX_HOST_GIB.value:
        row.update(time_steps(parallel, compiled, host_batch, steps))
      elif steps > 0:
        row["skipped"] = f"needs ~{row['host_gib']:.0f} GiB > --max_host_gib"
      rows.append(row)
      del compiled
  return rows


def measure_memory(num_devices: int) -> list[dict]:
  """Memory per device: mesh data=N (and fsdp=N when N > 1), remat none / full / dots_no_batch,
  all with scan_layers=True; compiled only."""
  meshes = {f"data={num_devices}": {"data": -1}}
  if num_devices > 1:
    meshes[f"fsdp={num_devices}"] = {"fsdp": -1}
  rows = []
  for name in _MODELS.value:
    for mesh_name, mesh_config in meshes.items():
      for policy in REMAT_POLICIES:
        parallel, state, batch, _ = build(
          name, "jit", mesh_config, jax.devices(), scan_layers=True, remat_policy=policy
        )
        _, compile_s, memory = compile_step(parallel, state, batch)
        row = {"model": name, "mesh": mesh_name, "remat": policy, "devices": num_devices}
        row.update(compile_s=compile_s, memory=memory, state_bytes=state_bytes_per_device(state))
        rows.append(row)
    # The FSDP target also counted from real arrays, where the replicated states fit in memory.
    replicated_bytes = num_devices * max(r["state_bytes"] for r in rows if r["model"] == name)
    if num_devices > 1 and replicated_bytes <= _MAX_HOST_GIB.value * 2**30:
      for mesh_name, mesh_config in meshes.items():
        parallel, *_ = build(name, "jit", mesh_config, jax.devices(), scan_layers=True)
        shard_bytes = addressable_bytes_on_device_0(parallel.init_state())
        for row in rows:
          if row["model"] == name and row["mesh"] == mesh_name:
            row["shard_bytes"] = shard_bytes
  return rows


def child(num_devices: int, out_path: str) -> None:
  if jax.device_count() != num_devices:
    raise RuntimeError(f"expected {num_devices} CPU devices, JAX has {jax.device_count()}")
  result = {"devices": num_devices, "modes": measure_modes(num_devices), "memory": []}
  if _MEMORY.value:
    result["memory"] = measure_memory(num_devices)
  with open(out_path, "w") as f:
    json.dump(result, f)


# ------------------------------------------------------------------------------ parent: report


def run_child(num_devices: int, out_path: str) -> dict:
  xla_flags = [
    f
    for f in os.environ.get("XLA_FLAGS", "").split()
    if not f.startswith("--xla_force_host_platform_device_count")
  ]
  xla_flags.append(f"--xla_force_host_platform_device_count={num_devices}")
  env = {**os.environ, "XLA_FLAGS": " ".join(xla_flags), "JAX_PLATFORMS": "cpu"}
  command = [sys.executable, "-m", "benchmarks.parallel", f"--devices={num_devices}"]
  command += [flag.serialize() for flag in FORWARDED] + [f"--child_json={out_path}"]
  done = subprocess.run(command, env=env, capture_output=True, text=True)
  if done.returncode:
    sys.exit(f"the {num_devices}-device run failed:\n{done.stderr[-6000:]}")
  with open(out_path) as f:
    return json.load(f)


def mib(x: float | None) -> str:
  return "-" if x is None else f"{x / MIB:,.1f}"


def print_modes(rows: list[dict]) -> None:
  print("\n== Parallel modes: compile, median step, compiled memory per device (MiB)")
  print("   (scan_layers=False, remat none; peak = argument + output - alias + temp)")
  header = (
    f"{'model':<11}{'dev':>4} {'mode':<10}{'mesh':<9}{'compile_s':>10}{'step_ms':>10}"
    f"{'tok/s':>9}{'state':>9}{'arg':>9}{'out':>9}{'temp':>9}{'peak':>9}  note"
  )
  print(header)
  print("-" * len(header))
  for r in rows:
    m = r["memory"]
    batch, seq = SHAPES[r["model"]][1:]
    step = r["step_s"]
    step_ms = f"{step * 1e3:,.1f}" if step else "-"
    tokens = f"{batch * seq / step:,.0f}" if step else "-"
    if step:
      note = f"median of {r['steps']}, loss {r['loss']:.3f}"
    else:
      note = "compile only" + (f" ({r['skipped']})" if "skipped" in r else "")
      if r["model"] == "gpt2_small" and "skipped" not in r:
        note += " (--gpt2_small_step_modes / --gpt2_small_steps)"
    print(
      f"{r['model']:<11}{r['devices']:>4} {r['mode']:<10}{r['mesh']:<9}{r['compile_s']:>10.1f}"
      f"{step_ms:>10}{tokens:>9}{mib(r['state_bytes']):>9}{mib(m['argument']):>9}"
      f"{mib(m['output']):>9}{mib(m['temp']):>9}{mib(m['peak']):>9}  {note}"
    )


def print_memory(rows: list[dict]) -> None:
  print("\n== Memory per device (MiB) with and without FSDP and remat (jit, scan_layers=True)")
  print("   (compiled only; temp/none: vs remat none on the same mesh; peak/data: vs data=N)")
  header = (
    f"{'model':<11}{'mesh':<8}{'remat':<14}{'state':>9}{'arg':>9}{'temp':>9}{'peak':>9}"
    f"{'temp/none':>10}{'peak/data':>10}"
  )
  print(header)
  print("-" * len(header))
  memory = {(r["model"], r["mesh"], r["remat"]): r["memory"] for r in rows}
  for r in rows:
    m, n = r["memory"], r["devices"]
    temp_ratio = m["temp"] / memory[r["model"], r["mesh"], "none"]["temp"]
    peak_ratio = m["peak"] / memory[r["model"], f"data={n}", r["remat"]]["peak"]
    print(
      f"{r['model']:<11}{r['mesh']:<8}{r['remat']:<14}{mib(r['state_bytes']):>9}"
      f"{mib(m['argument']):>9}{mib(m['temp']):>9}{mib(m['peak']):>9}"
      f"{temp_ratio:>10.2f}{peak_ratio:>10.2f}"
    )


def fsdp_checks(rows: list[dict]) -> list[tuple[str, bool, float]]:
  """FSDP over N devices holds <= 1/4 of the replicated parameter + optimizer bytes per device."""
  results = []
  print("\n== Target: FSDP on 8 devices holds <= 1/4 of the replicated state bytes per device")
  fsdp_rows = [r for r in rows if r["mesh"].startswith("fsdp") and r["remat"] == "none"]
  if not fsdp_rows:
    print("(no FSDP rows: run with 8 devices, e.g. --devices=8)")
  for fsdp in fsdp_rows:
    name, n = fsdp["model"], fsdp["devices"]
    replicated = next(
      r for r in rows if (r["model"], r["mesh"], r["remat"]) == (name, f"data={n}", "none")
    )
    ratio = fsdp["state_bytes"] / replicated["state_bytes"]
    ok = ratio <= 0.25
    counted = " (from the shardings)"
    if "shard_bytes" in fsdp:
      shard_ratio = fsdp["shard_bytes"] / replicated["shard_bytes"]
      ok = ok and shard_ratio <= 0.25
      counted = (
        f" (from the shardings); from real arrays' addressable shards on device 0: "
        f"{mib(fsdp['shard_bytes'])} vs {mib(replicated['shard_bytes'])} MiB = {shard_ratio:.3f}"
      )
    print(
      f"{'PASS' if ok else 'FAIL'} {name}: fsdp={n} holds {mib(fsdp['state_bytes'])} MiB/device "
      f"of parameter + optimizer state, replicated {mib(replicated['state_bytes'])} MiB/device: "
      f"{ratio:.3f} of it, limit 0.25{counted}"
    )
    results.append((name, ok, ratio))
  return results


def parent() -> None:
  results = []
  with tempfile.TemporaryDirectory() as tmp:
    for count in _DEVICES.value:
      start = time.perf_counter()
      results.append(run_child(int(count), os.path.join(tmp, f"{count}.json")))
      results[-1]["wall_s"] = time.perf_counter() - start
  order = lambda r: (_MODELS.value.index(r["model"]), r["devices"])  # stable: modes, meshes
  modes = sorted((r for result in results for r in result["modes"]), key=order)
  memory = sorted((r for result in results for r in result["memory"]), key=order)
  print(
    f"models={','.join(_MODELS.value)} batch x seq: "
    + ", ".join(f"{n} {SHAPES[n][1]}x{SHAPES[n][2]}" for n in _MODELS.value)
    + "; float32, AdamW, no dropout; simulated CPU devices share this machine's cores"
  )
  print("timings are noisy on a shared 2-core CPU (no pinning): medians, compare within a run")
  print_modes(modes)
  summary: dict[str, Any] = {}
  for r in modes:
    key = f"{r['model']}_{r['devices']}dev_{r['mode']}" + ("_fsdp" if "fsdp" in r["mesh"] else "")
    summary[f"{key}_compile_s"] = f"{r['compile_s']:.1f}"
    if r["step_s"]:
      summary[f"{key}_step_ms"] = f"{r['step_s'] * 1e3:.1f}"
    summary[f"{key}_peak_mib"] = f"{r['memory']['peak'] / MIB:.1f}"
  if memory:
    print_memory(memory)
    checks = fsdp_checks(memory)
    for name, _, ratio in checks:
      summary[f"{name}_fsdp_state_ratio"] = f"{ratio:.3f}"
    by_key = {(r["model"], r["mesh"], r["remat"]): r["memory"]["temp"] for r in memory}
    for (name, mesh_name, policy), temp in by_key.items():
      if policy != "none":
        ratio = temp / by_key[name, mesh_name, "none"]
        summary[f"{name}_{mesh_name.replace('=', '')}_remat_{policy}_temp_ratio"] = f"{ratio:.3f}"
    if checks:
      summary["fsdp_check"] = "PASS" if all(ok for _, ok, _ in checks) else "FAIL"
  summary["wall_s"] = f"{sum(r['wall_s'] for r in results):.0f}"
  print(" ".join(f"{k}={v}" for k, v in summary.items()))


def main(argv: list[str]) -> None:
  del argv
  unknown = sorted(set(_MODELS.value) - set(SHAPES))
  if unknown:
    raise app.UsageError(f"--models has unknown {unknown}; choose from {sorted(SHAPES)}")
  bad_modes = sorted(set(_MODES.value) - {"jit", "shard_map", "pmap"})
  if bad_modes:
    raise app.UsageError(f"--modes has unknown {bad_modes}; choose from jit, shard_map, pmap")
  if _CHILD.value:
    child(int(_DEVICES.value[0]), _CHILD.value)
  else:
    parent()


if __name__ == "__main__":
  app.run(main)
