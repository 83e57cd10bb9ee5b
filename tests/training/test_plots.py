"""Plots show what they are given: the curves' points, scales and labels, and one heatmap per
attention head; the PNG written is the figure (read back, of the figure's size)."""

import matplotlib.image
import numpy as np
import pytest

from tfjax.training import plots


def _read_png(path, fig) -> np.ndarray:
  image = matplotlib.image.imread(str(path))  # [rows, cols, RGBA]
  width, height = fig.get_size_inches() * plots.DPI
  assert image.shape[:2] == (round(height), round(width))
  return image


def test_loss_curves_plot_each_split_s_points_in_step_order(tmp_path):
  records = [{"step": s, "split": "train", "loss": 5.0 / s} for s in range(49, 0, -1)]
  records += [{"step": s, "split": "eval", "loss": 6.0 / s} for s in (10, 20, 30, 40)]
  records += [{"step": 5, "split": "train", "tokens_per_s": 1e3}]  # no loss: skipped
  path = tmp_path / "plots" / "loss.png"
  fig = plots.plot_loss_curves(records, str(path), log_scale=True)

  (ax,) = fig.axes
  lines = {line.get_label(): line for line in ax.get_lines()}
  assert sorted(lines) == ["eval", "train"]
  np.testing.assert_array_equal(lines["train"].get_xdata(), np.arange(1, 50))
  np.testing.assert_allclose(lines["train"].get_ydata(), 5.0 / np.arange(1, 50))
  np.testing.assert_array_equal(lines["eval"].get_xdata(), [10, 20, 30, 40])
  np.testing.assert_allclose(lines["eval"].get_ydata(), [0.6, 0.3, 0.2, 0.15])
  assert ax.get_yscale() == "log" and (ax.get_xlabel(), ax.get_ylabel()) == ("step", "loss")
  image = _read_png(path, fig)
  assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 10  # drawn, not blank


def test_a_run_without_eval_records_plots_its_train_curve_alone(tmp_path):
  records = [{"step": s, "split": "train", "loss": 1.0 + s} for s in (1, 2, 3)]
  fig = plots.plot_loss_curves(records, str(tmp_path / "loss.png"))
  (ax,) = fig.axes
  assert [line.get_label() for line in ax.get_lines()] == ["train"]
  assert ax.get_yscale() == "linear"


def test_loss_curves_without_loss_raises(tmp_path):
  with pytest.raises(ValueError, match="loss"):
    plots.plot_loss_curves([{"step": 1, "split": "train", "lr": 0.1}], str(tmp_path / "x.png"))


def test_attention_maps_draw_each_head_s_weights_with_the_tokens_as_labels(tmp_path):
  weights = np.random.default_rng(0).random((3, 4, 5))
  weights /= weights.sum(-1, keepdims=True)  # [heads, q, k], rows sum to 1
  keys = ["The", "city", "of", "Paris", "."]
  queries = ["Die", "Stadt", "von", "Paris"]
  path = tmp_path / "attention.png"
  fig = plots.plot_attention_maps(weights, keys, str(path), query_tokens=queries, max_cols=2)

  heads = [ax for ax in fig.axes if ax.images]  # 2 x 2 grid: the 4th cell is off
  assert [ax.get_title() for ax in heads] == ["head 0", "head 1", "head 2"]
  for h, ax in enumerate(heads):
    np.testing.assert_allclose(ax.images[0].get_array(), weights[h], rtol=1e-6)
    assert [t.get_text() for t in ax.get_xticklabels()] == keys
    assert [t.get_text() for t in ax.get_yticklabels()] == queries
  _read_png(path, fig)


def test_attention_maps_need_one_label_per_position(tmp_path):
  weights = np.full((4, 4), 0.25)  # one head as [q, k]
  with pytest.raises(ValueError, match="key tokens"):
    plots.plot_attention_maps(weights, ["too", "few"], str(tmp_path / "a.png"))
