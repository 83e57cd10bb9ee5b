"""Metrics out of a run: JSONL (always), TensorBoard event files, a progress bar, MFU, and a
classifier's confusion matrix.

TensorBoard files are written by `tensorboardX`, which needs no TensorFlow (clu's metric writers
import it). Only process 0 writes, so multi-host runs produce one record.
"""

import json
import math
import os
import statistics
import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
_RESERVED = ("step", "split")


def _scalar(name: str, value: Any) -> float | int:
  array = np.asarray(jax.device_get(value))
  if array.size != 1:
    raise ValueError(f"metric {name!r} has shape {array.shape}; only scalars can be written")
  item = array.reshape(()).item()
  return item if isinstance(item, int) and not isinstance(item, bool) else float(item)


class MetricWriter:
  """Writes scalars to `<workdir>/metrics.jsonl` and `<workdir>/tensorboard/<split>`.

  Each `write` appends one JSON line `{"step": s, "split": split, name: value, ...}`. An
  existing file is appended to, never truncated; after a resume from step s, call
  `truncate_after(s)` first so the lines of the lost steps (> s) disappear, and TensorBoard is
  told to purge them too.
  """

  def __init__(self, workdir: str, enabled: bool | None = None, tensorboard: bool = True):
    self.workdir = workdir
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.path = os.path.join(workdir, METRICS_FILE)
    self._tensorboard = tensorboard
    self._file = None
    self._tb_writers: dict[str, Any] = {}
    self._purge_step: int | None = None

  def write(self, step: int, metrics: Mapping[str, Any], split: str = "train") -> None:
    """Appends the scalars `metrics` at `step` for `split` ("train", "eval", ...)."""
    if not self.enabled:
      return
    clash = [k for k in metrics if k in _RESERVED]
    if clash:
      raise ValueError(f"metric names {clash} are reserved for the record; rename them")
    step = int(step)
    values = {name: _scalar(name, value) for name, value in metrics.items()}
    if self._file is None:
      os.makedirs(self.workdir, exist_ok=True)
      self._file = open(self.path, "a", encoding="utf-8")
    # flush each line: a crashed run keeps every step it logged
    self._file.write(json.dumps({"step": step, "split": split, **values}) + "\n")
    self._file.flush()
    if self._tensorboard:
      writer = self._tb_writer(split)
      for name, value in values.items():
        writer.add_scalar(name, value, global_step=step)

  def truncate_after(self, step: int) -> None:
    """Drops the JSONL records with step > `step` (and a torn last line), for a resumed run.

    TensorBoard files are append-only: each split's writer records a purge marker so
    TensorBoard discards that split's old events from `step + 1` on.
    """
    if not self.enabled:
      return
    step = int(step)
    self._close_files()
    self._purge_step = step + 1
    tb_root = os.path.join(self.workdir, TENSORBOARD_DIR)
    if self._tensorboard and os.path.isdir(tb_root):
      for split in sorted(os.listdir(tb_root)):  # mark every split, logged again or not
        if os.path.isdir(os.path.join(tb_root, split)):
          self._tb_writer(split).flush()
    if not os.path.exists(self.path):
      return
    kept = [r for r in _read_records(self.path, tolerate_torn_tail=True) if r["step"] <= step]
    tmp = self.path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.writelines(json.dumps(r) + "\n" for r in kept)
    os.replace(tmp, self.path)

  def close(self) -> None:
    self._close_files()

  def __enter__(self) -> "MetricWriter":
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()

  def _tb_writer(self, split: str) -> Any:
    if split not in self._tb_writers:
      from tensorboardX import SummaryWriter  # imported late: only writers need it

      # tensorboardX names files by the second; a suffix keeps a quick restart from
      # overwriting the previous file, and keeps the names in write order.
      self._tb_writers[split] = SummaryWriter(
        os.path.join(self.workdir, TENSORBOARD_DIR, split),
        purge_step=self._purge_step,
        filename_suffix=f".{time.time_ns()}",
      )
    return self._tb_writers[split]

  def _close_files(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None
    for writer in self._tb_writers.values():
      writer.close()
    self._tb_writers = {}


def _read_records(path: str, tolerate_torn_tail: bool = True) -> list[dict]:
  with open(path, encoding="utf-8") as f:
    lines = [line for line in f.read().split("\n") if line.strip()]
  records = []
  for i, line in enumerate(lines):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError as e:
      if tolerate_torn_tail and i == len(lines) - 1:
        break  # a run killed mid-write leaves half a line at the end
      raise ValueError(f"{path}, line {i + 1} is not JSON: {e}") from e
  return records


def read_metrics(workdir: str) -> list[dict]:
  """Reads `<workdir>/metrics.jsonl` back as a list of records, in file order."""
  return _read_records(os.path.join(workdir, METRICS_FILE))


class ProgressBar:
  """A tqdm bar over training steps with loss and tokens/s; tqdm computes the rate and ETA.

  This is the library's one reporter to the terminal; it is silent except on process 0.
  """

  def __init__(self, num_steps: int, initial_step: int = 0, enabled: bool | None = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._bar = tqdm.tqdm(
      total=num_steps,
      initial=initial_step,
      desc="train",
      unit="step",
      dynamic_ncols=True,
      disable=not self.enabled,
    )

  def update(self, step: int, loss: float | None = None, tokens_per_s: float | None = None) -> None:
    """Moves the bar to `step` and shows the latest loss and tokens/s."""
    if not self.enabled:
      return
    postfix = {}
    if loss is not None:
      postfix["loss"] = f"{float(loss):.4f}"
    if tokens_per_s is not None:
      postfix["tok/s"] = _si(float(tokens_per_s))
    self._bar.set_postfix(postfix, refresh=False)
    self._bar.update(int(step) - self._bar.n)

  def close(self) -> None:
    self._bar.close()


def _si(x: float) -> str:
  for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
    if abs(x) >= scale:
      return f"{x / scale:.1f}{unit}"
  return f"{x:.0f}"


# ------------------------------------------------------------------------------ FLOPs and MFU


def transformer_flops_per_token(
  num_params_no_pos: int, num_layers: int, seq_len: int, d_model: int
) -> float:
  """Training FLOPs per token: 6 N + 12 n_layer T d_model.

  6 N is forward (2 N) plus backward (4 N) through every weight matrix (Kaplan et al. 2020,
  §2.1); 12 L T d adds the attention scores and the weighted sum, which hold no parameters
  (Chowdhery et al. 2022, PaLM, Appendix B; nanoGPT's `estimate_mfu`). N is the parameter
  count without positional embeddings (a lookup, not a matmul), with the tied output
  projection counted once.
  """
  return 6.0 * num_params_no_pos + 12.0 * num_layers * seq_len * d_model


def measure_matmul_peak_flops(
  n: int = 2048,
  dtype: Any = jnp.float32,
  repeats: int = 5,
  device: jax.Device | None = None,
) -> float:
  """Measures this device's matmul FLOP/s: a jitted n x n x n `jnp.matmul` (2 n^3 FLOPs).

  An empirical "peak" for MFU where no datasheet number applies (CPUs): the median over
  `repeats` timings after a warm-up call, blocking on results. Each timing runs enough
  back-to-back matmuls to last at least ~20 ms, so dispatch overhead stays small. Runs at the
  default matmul precision, the one the models use; by default on this process's first device.
  """
  if n <= 0 or repeats <= 0:
    raise ValueError(f"n={n} and repeats={repeats} must be positive")
  device = device or jax.local_devices()[0]  # jax.devices()[0] is another process's on hosts > 0
  ka, kb = jax.random.split(jax.random.key(0))
  a = jax.device_put(jax.random.normal(ka, (n, n), dtype), device)
  b = jax.device_put(jax.random.normal(kb, (n, n), dtype), device)
  matmul = jax.jit(jnp.matmul)
  matmul(a, b).block_until_ready()  # compile and warm up

  def timed(number: int) -> float:
    start = time.perf_counter()
    jax.block_until_ready([matmul(a, b) for _ in range(number)])
    return (time.perf_counter() - start) / number

  number, seconds = 1, timed(1)
  while seconds * number < 0.02 and number < 1024:
    number *= 2
    seconds = timed(number)
  median = statistics.median(timed(number) for _ in range(repeats))
  return 2.0 * n**3 / median


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops: float) -> float:
  """Model FLOPs utilisation: achieved model FLOP/s over the device's peak (PaLM, App. B)."""
  if not peak_flops > 0 or math.isinf(peak_flops):
    raise ValueError(f"peak_flops={peak_flops} must be positive and finite")
  return tokens_per_s * flops_per_token / peak_flops


# ------------------------------------------------------------------------- classification


def confusion_matrix(
  labels: Any, predictions: Any, num_classes: int, weights: Any = None
) -> np.ndarray:
  """Counts [num_classes, num_classes] of (true label, prediction): row = true class, column =
  predicted, so the diagonal is the correct ones and a row's sum the class's examples.
  `weights` are the eval batches' per-example weights (0 for the padding that fills the last
  batch, else 1; any whole counts): a weight-0 example is not counted, whatever its label."""
  labels = np.asarray(labels).reshape(-1)
  predictions = np.asarray(predictions).reshape(-1)
  weights = np.ones(labels.shape) if weights is None else np.asarray(weights).reshape(-1)
  if not labels.shape == predictions.shape == weights.shape:
    raise ValueError(
      f"{labels.size} labels, {predictions.size} predictions and {weights.size} weights; give "
      "one of each per example"
    )
  if np.any(weights < 0) or np.any(weights != np.round(weights)):
    raise ValueError("weights must be whole counts >= 0 (1 an example, 0 padding)")
  counted = weights != 0
  labels, predictions, weights = labels[counted], predictions[counted], weights[counted]
  for name, ids in (("labels", labels), ("predictions", predictions)):
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
      raise ValueError(
        f"{name} run from {ids.min()} to {ids.max()}, outside the classes 0..{num_classes - 1}"
      )
  index = labels.astype(np.int64) * num_classes + predictions.astype(np.int64)
  counts = np.bincount(index, weights=weights, minlength=num_classes * num_classes)
  return np.rint(counts).astype(np.int64).reshape(num_classes, num_classes)
