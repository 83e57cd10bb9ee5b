"""PNG plots of a run: loss curves and attention maps.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no display, no global
state), so plotting works headless and from any thread.
"""

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 120  # pixels per inch of the PNGs


def _save(fig: Figure, path: str) -> Figure:
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  FigureCanvasAgg(fig)
  fig.savefig(path, format="png", dpi=DPI)
  return fig


def plot_loss_curves(
  metrics: Sequence[dict[str, Any]],
  path: str,
  key: str = "loss",
  log_scale: bool = False,
) -> Figure:
  """Plots train and eval `key` against step on one figure, saved as a PNG at `path`; returns
  the figure.

  `metrics` are the records of `read_metrics` (`{"step", "split", ...}`); records without
  `key` are skipped, so a run that has not evaluated yet plots its train curve alone.
  """
  curves = {}
  for split in ("train", "eval"):
    points = sorted((r["step"], r[key]) for r in metrics if r.get("split") == split and key in r)
    if points:
      curves[split] = np.asarray(points, dtype=np.float64)
  if not curves:
    raise ValueError(f"no train or eval records with {key!r} to plot; check the metrics")

  fig = Figure(figsize=(7, 4.5), layout="constrained")
  ax = fig.add_subplot()
  styles = {"train": dict(lw=1.0, alpha=0.8), "eval": dict(lw=1.5, marker="o", ms=4)}
  for split, points in curves.items():
    ax.plot(points[:, 0], points[:, 1], label=split, **styles[split])
  if log_scale:
    ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel(key)
  ax.set_title(f"{key} vs step")
  ax.grid(True, alpha=0.3)
  ax.legend()
  return _save(fig, path)


def plot_attention_maps(
  weights: Any,
  tokens: Sequence[str],
  path: str,
  query_tokens: Sequence[str] | None = None,
  max_cols: int = 4,
) -> Figure:
  """Draws one heatmap per head of attention `weights` [heads, q, k] (or [q, k]) as a PNG at
  `path`; returns the figure.

  `tokens` label the keys, `query_tokens` the queries (the same tokens by default, as in
  self-attention; pass the target tokens for cross-attention).
  """
  weights = np.asarray(weights, dtype=np.float32)
  if weights.ndim == 2:
    weights = weights[None]  # [1, q, k]
  if weights.ndim != 3:
    raise ValueError(f"weights have shape {weights.shape}; expected [heads, q, k] or [q, k]")
  query_tokens = tokens if query_tokens is None else query_tokens
  num_heads, q_len, k_len = weights.shape
  if len(tokens) != k_len or len(query_tokens) != q_len:
    raise ValueError(
      f"weights [heads={num_heads}, q={q_len}, k={k_len}] do not match {len(query_tokens)} "
      f"query and {len(tokens)} key tokens; pass one label per position"
    )

  cols = min(num_heads, max_cols)
  rows = math.ceil(num_heads / cols)
  cell = max(2.5, 0.25 * max(q_len, k_len))
  fig = Figure(figsize=(cols * cell + 1.0, rows * cell), layout="constrained")
  axes = fig.subplots(rows, cols, squeeze=False)
  image = None
  for h, ax in enumerate(axes.flat):
    if h >= num_heads:
      ax.axis("off")
      continue
    image = ax.imshow(weights[h], cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_title(f"head {h}")
    ax.set_xticks(range(k_len), labels=list(tokens), rotation=90, fontsize=7)
    ax.set_yticks(range(q_len), labels=list(query_tokens), fontsize=7)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
  fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
  return _save(fig, path)
