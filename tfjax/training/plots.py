"""PNG plots of a run: loss curves, attention maps (of tokens, and of a ViT over its images), a
confusion matrix and the misclassified images.

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


# ---------------------------------------------------------------------------------- images


def _display(image: Any) -> np.ndarray:
  """An image [H, W], [H, W, 1] or [H, W, 3] as floats in [0, 1] for imshow ([H, W] if gray):
  uint8 over 255, floats already in [0, 1] as they are, other floats (normalised inputs) min-max
  scaled, since a model's inputs are often standardised to a range no display takes."""
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
    raise ValueError(f"an image has shape {image.shape}; give [H, W], [H, W, 1] or [H, W, 3]")
  if image.dtype == np.uint8:
    return image.astype(np.float32) / 255.0
  image = np.nan_to_num(image.astype(np.float32))
  low, high = float(image.min()), float(image.max())
  if low >= 0.0 and high <= 1.0:
    return image
  return (image - low) / (high - low) if high > low else np.zeros_like(image)


def _show_image(ax: Any, image: np.ndarray, alpha: float = 1.0) -> None:
  if image.ndim == 2:
    ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, alpha=alpha)
  else:
    ax.imshow(image, alpha=alpha)
  ax.set_xticks([])
  ax.set_yticks([])


def _overlay(ax: Any, image: np.ndarray, heat: np.ndarray, vmax: float | None = None) -> Any:
  """The image in gray (so the map's colours are the only colours), and over it `heat` [h, w]
  on the patch grid: each patch's value over its pixels (nearest, the map the model has: one
  token per patch). Returns the heat map's image."""
  height, width = image.shape[:2]
  gray = image if image.ndim == 2 else image @ np.array([0.299, 0.587, 0.114], np.float32)
  _show_image(ax, gray)
  vmax = float(heat.max()) if vmax is None else vmax
  return ax.imshow(
    heat,
    cmap="inferno",
    vmin=0.0,
    vmax=vmax if vmax > 0 else 1.0,
    alpha=0.6,
    interpolation="nearest",
    extent=(-0.5, width - 0.5, height - 0.5, -0.5),  # the image's own pixel extent
  )


def _name(label: Any, label_names: Sequence[str] | None) -> str:
  if label_names is not None and np.issubdtype(np.asarray(label).dtype, np.integer):
    return str(label_names[int(label)])
  return str(label)


def _label_title(label: Any, prediction: Any, label_names: Sequence[str] | None) -> str:
  if prediction is None:
    return f"label: {_name(label, label_names)}"
  return f"true: {_name(label, label_names)} / predicted: {_name(prediction, label_names)}"


def plot_image_attention(
  images: Any,
  cls_maps: Any,
  rollout: Any,
  labels: Sequence[Any],
  path: str,
  predictions: Sequence[Any] | None = None,
  label_names: Sequence[str] | None = None,
  max_images: int = 4,
  layer: int = -1,
) -> Figure:
  """What a ViT looks at, one row per image (the first `max_images`): the image, titled with its
  label (and prediction); the attention rollout over it (Abnar & Zuidema 2020, §3, as
  Dosovitskiy et al. 2020, §4.5 / Fig. 6); and each head's [CLS] attention at `layer` (the last
  by default) over it. Saved as a PNG at `path`; returns the figure.

  `images` [b, H, W] or [b, H, W, 1 | 3], uint8 or floats in any range; `cls_maps` [layers, b,
  heads, h, w] and `rollout` [b, h, w], on the patch grid (tfjax.inference.attention_views).
  Each map has its own colour scale (0 to its maximum): the rollout and a head's weights are
  not on one scale; `plot_attention_layers` compares the layers and heads on one.
  """
  images = np.asarray(images)
  cls_maps = np.asarray(cls_maps, np.float32)  # [layers, b, heads, h, w]
  rollout = np.asarray(rollout, np.float32)  # [b, h, w]
  if (
    cls_maps.ndim != 5
    or rollout.ndim != 3
    or rollout.shape
    != (
      cls_maps.shape[1],
      *cls_maps.shape[3:],
    )
  ):
    raise ValueError(
      f"cls_maps {cls_maps.shape} and rollout {rollout.shape} are not [layers, b, heads, h, w] "
      "and [b, h, w] of one batch; give tfjax.inference.attention_views' maps"
    )
  num_layers, batch, num_heads = cls_maps.shape[:3]
  if len(images) != batch or len(labels) != batch:
    raise ValueError(
      f"{len(images)} images and {len(labels)} labels for maps of {batch} images; give one each"
    )
  layer = range(num_layers)[layer]
  rows, cols = min(batch, max_images), 2 + num_heads
  fig = Figure(figsize=(2.0 * cols, 2.2 * rows + 0.4), layout="constrained")
  axes = fig.subplots(rows, cols, squeeze=False)
  for i in range(rows):
    image = _display(images[i])
    _show_image(axes[i, 0], image)
    prediction = None if predictions is None else predictions[i]
    axes[i, 0].set_title(_label_title(labels[i], prediction, label_names), fontsize=8)
    _overlay(axes[i, 1], image, rollout[i])
    axes[i, 1].set_title("rollout", fontsize=8)
    for h in range(num_heads):
      _overlay(axes[i, 2 + h], image, cls_maps[layer, i, h])
      axes[i, 2 + h].set_title(f"layer {layer} head {h}", fontsize=8)
  fig.suptitle("attention to the patches: rollout over all layers, and one layer's heads")
  return _save(fig, path)


def plot_attention_layers(image: Any, cls_maps: Any, path: str, title: str | None = None) -> Figure:
  """Every layer's and head's [CLS] attention over one image, on one colour scale: rows are the
  layers (first at the top), columns the heads and their mean, so a student sees how the
  attention moves from near-uniform to focused with depth, and where heads differ. Saved as a
  PNG at `path`; returns the figure.

  `image` [H, W] or [H, W, 1 | 3]; `cls_maps` [layers, heads, h, w] (one image's maps of
  tfjax.inference.attention_views.cls_attention).
  """
  image = _display(image)
  cls_maps = np.asarray(cls_maps, np.float32)  # [layers, heads, h, w]
  if cls_maps.ndim != 4:
    raise ValueError(
      f"cls_maps have shape {cls_maps.shape}; give one image's [layers, heads, h, w]"
    )
  num_layers, num_heads = cls_maps.shape[:2]
  maps = np.concatenate([cls_maps, cls_maps.mean(axis=1, keepdims=True)], axis=1)
  vmax = float(maps.max())
  fig = Figure(figsize=(1.8 * (num_heads + 1) + 1.0, 1.8 * num_layers + 0.5), layout="constrained")
  axes = fig.subplots(num_layers, num_heads + 1, squeeze=False)
  heat = None
  for layer in range(num_layers):
    for h in range(num_heads + 1):
      heat = _overlay(axes[layer, h], image, maps[layer, h], vmax=vmax)
      if layer == 0:
        axes[layer, h].set_title("mean of heads" if h == num_heads else f"head {h}", fontsize=8)
    axes[layer, 0].set_ylabel(f"layer {layer}", fontsize=8)
  fig.colorbar(heat, ax=axes.ravel().tolist(), shrink=0.8, label="attention weight")
  fig.suptitle(title or "attention to the patches, per layer and head")
  return _save(fig, path)


# ------------------------------------------------------------------------- classification


def plot_confusion_matrix(
  matrix: Any, label_names: Sequence[str] | None, path: str, max_numbers: int = 30
) -> Figure:
  """A confusion matrix [true, predicted] of counts (metrics.confusion_matrix): true classes on
  y, predicted on x, each cell's count written in it and coloured by its row's fraction (the
  recall of the class on the diagonal), so a rare class's errors show as well as a common
  one's. With more than `max_numbers` classes the numbers are left out (unreadable). Saved as
  a PNG at `path`; returns the figure."""
  matrix = np.asarray(matrix)
  if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
    raise ValueError(f"a confusion matrix has shape {matrix.shape}; give [classes, classes]")
  n = matrix.shape[0]
  names = [str(i) for i in range(n)] if label_names is None else [str(s) for s in label_names]
  if len(names) != n:
    raise ValueError(f"{len(names)} label names for {n} classes; give one name per class")
  totals = matrix.sum(axis=1, keepdims=True)
  fractions = matrix / np.maximum(totals, 1)  # [true, predicted], rows sum to 1 (or 0)

  cell = 0.45 if n <= max_numbers else 0.2
  size = max(4.0, cell * n + 2.0)
  fig = Figure(figsize=(size + 1.0, size), layout="constrained")
  ax = fig.add_subplot()
  image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
  if n <= max_numbers:
    for i in range(n):
      for j in range(n):
        color = "white" if fractions[i, j] > 0.5 else "black"
        ax.text(j, i, f"{matrix[i, j]:g}", ha="center", va="center", color=color, fontsize=7)
  ax.set_xticks(range(n), labels=names, rotation=90 if max(map(len, names)) > 3 else 0)
  ax.set_yticks(range(n), labels=names)
  ax.tick_params(labelsize=7)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  total = matrix.sum()
  accuracy = np.trace(matrix) / total if total else 0.0
  ax.set_title(f"confusion matrix: {total:g} examples, accuracy {accuracy:.1%}")
  fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class")
  return _save(fig, path)


def plot_misclassified(
  images: Any,
  labels: Any,
  predictions: Any,
  label_names: Sequence[str] | None,
  path: str,
  max_images: int = 25,
) -> Figure:
  """A grid of the first `max_images` images whose prediction is not their label, each titled
  "true: X / predicted: Y" (the errors a student should look at, after the confusion matrix's
  counts). A model with no errors gets a PNG that says so. Saved at `path`; returns the figure.

  `images` [b, H, W] or [b, H, W, 1 | 3], uint8 or floats in any range; `labels` and
  `predictions` [b] class ids.
  """
  labels, predictions = np.asarray(labels).reshape(-1), np.asarray(predictions).reshape(-1)
  if not len(images) == len(labels) == len(predictions):
    raise ValueError(
      f"{len(images)} images, {len(labels)} labels and {len(predictions)} predictions; give "
      "one label and one prediction per image"
    )
  wrong = np.flatnonzero(labels != predictions)
  shown = wrong[:max_images]
  cols = max(1, math.ceil(math.sqrt(len(shown))))
  rows = max(1, math.ceil(len(shown) / cols))
  fig = Figure(figsize=(2.2 * cols, 2.2 * rows + 0.4), layout="constrained")
  axes = fig.subplots(rows, cols, squeeze=False)
  for ax in axes.flat:
    ax.axis("off")
  for ax, i in zip(axes.flat, shown, strict=False):
    _show_image(ax, _display(images[i]))
    ax.axis("on")
    ax.set_title(_label_title(labels[i], predictions[i], label_names), fontsize=7)
  if len(wrong):
    shown_note = f" (the first {len(shown)} shown)" if len(shown) < len(wrong) else ""
    fig.suptitle(f"{len(wrong)} of {len(labels)} misclassified{shown_note}")
  else:
    axes[0, 0].text(0.5, 0.5, f"no misclassified images of {len(labels)}", ha="center")
  return _save(fig, path)
