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


def _is_png(path) -> bool:
  with open(path, "rb") as f:
    return f.read(8) == b"\x89PNG\r\n\x1a\n"


def _heat(ax) -> np.ndarray:
  base, heat = ax.images  # the image, then the map over it
  return np.asarray(heat.get_array())


def _vit_maps(rng, layers=2, batch=3, heads=2, grid=(2, 2)):
  cls_maps = rng.random((layers, batch, heads, *grid))  # [layers, b, heads, h, w]
  rollout = rng.random((batch, *grid))  # [b, h, w]
  return cls_maps, rollout


def test_image_attention_draws_each_image_its_rollout_and_the_last_layer_s_heads(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
  cls_maps, rollout = _vit_maps(rng)
  path = tmp_path / "views" / "attention.png"
  fig = plots.plot_image_attention(
    images, cls_maps, rollout, [0, 1, 2], str(path), [0, 2, 2], ["cat", "dog", "ship"], 2
  )

  axes = np.reshape(fig.axes, (2, 4))  # 2 images shown, of 3; image | rollout | 2 heads
  titles = [ax.get_title() for ax in axes[:, 0]]
  assert titles == ["true: cat / predicted: cat", "true: dog / predicted: ship"]
  assert [ax.get_title() for ax in axes[0, 1:]] == ["rollout", "layer 1 head 0", "layer 1 head 1"]
  for i in range(2):
    np.testing.assert_allclose(axes[i, 0].images[0].get_array(), images[i] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(_heat(axes[i, 1]), rollout[i], rtol=1e-6)
    for h in range(2):
      np.testing.assert_allclose(_heat(axes[i, 2 + h]), cls_maps[-1, i, h], rtol=1e-6)
  assert _is_png(path)
  image = _read_png(path, fig)
  assert 300 <= image.shape[0] <= 1500 and 600 <= image.shape[1] <= 1500


def test_gray_float_images_of_any_range_are_drawn_in_0_to_1_with_their_label(tmp_path):
  rng = np.random.default_rng(1)
  images = rng.normal(0.0, 2.0, (1, 8, 8, 1))  # standardised inputs, far outside [0, 1]
  cls_maps, rollout = _vit_maps(rng, layers=3, batch=1, heads=1)
  fig = plots.plot_image_attention(
    images, cls_maps, rollout, ["7"], str(tmp_path / "a.png"), layer=0
  )
  shown = fig.axes[0].images[0]
  assert shown.get_cmap().name == "gray" and fig.axes[0].get_title() == "label: 7"
  drawn = np.asarray(shown.get_array())
  assert drawn.shape == (8, 8) and (drawn.min(), drawn.max()) == (0.0, 1.0)
  np.testing.assert_allclose(_heat(fig.axes[2]), cls_maps[0, 0, 0], rtol=1e-6)  # layer 0
  with pytest.raises(ValueError, match="one each"):
    plots.plot_image_attention(images, cls_maps, rollout, [], str(tmp_path / "b.png"))


def test_attention_layers_draw_layers_by_heads_and_their_mean_on_one_scale(tmp_path):
  rng = np.random.default_rng(2)
  cls_maps, _ = _vit_maps(rng, layers=3, batch=1, heads=2)
  path = tmp_path / "attention_layers.png"
  fig = plots.plot_attention_layers(rng.random((8, 8, 3)), cls_maps[:, 0], str(path), "cat")

  axes = np.reshape([ax for ax in fig.axes if ax.images], (3, 3))  # the colorbar's axes left out
  assert [ax.get_title() for ax in axes[0]] == ["head 0", "head 1", "mean of heads"]
  assert [ax.get_ylabel() for ax in axes[:, 0]] == ["layer 0", "layer 1", "layer 2"]
  for layer in range(3):
    for h in range(2):
      np.testing.assert_allclose(_heat(axes[layer, h]), cls_maps[layer, 0, h], rtol=1e-6)
    np.testing.assert_allclose(_heat(axes[layer, 2]), cls_maps[layer, 0].mean(0), rtol=1e-6)
  limits = {ax.images[1].get_clim() for ax in axes.flat}
  assert len(limits) == 1 and np.isclose(limits.pop()[1], cls_maps.max())
  assert _is_png(path)
  _read_png(path, fig)


def test_confusion_matrix_writes_counts_coloured_by_the_true_class_s_fraction(tmp_path):
  matrix = np.array([[8, 2, 0], [1, 1, 0], [0, 0, 0]])  # true on rows; class 2 never occurs
  path = tmp_path / "confusion.png"
  fig = plots.plot_confusion_matrix(matrix, ["cat", "dog", "ship"], str(path))

  ax = fig.axes[0]
  expected = [[0.8, 0.2, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]
  np.testing.assert_allclose(ax.images[0].get_array(), expected)
  texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
  assert texts == {(i, j): str(matrix[i, j]) for i in range(3) for j in range(3)}
  assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")
  assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "dog", "ship"]
  assert "accuracy 75.0%" in ax.get_title()
  assert _is_png(path)
  _read_png(path, fig)


def test_misclassified_shows_only_the_errors_with_true_and_predicted_names(tmp_path):
  rng = np.random.default_rng(3)
  images = rng.random((6, 8, 8))
  labels, predictions = np.array([0, 1, 2, 0, 1, 2]), np.array([0, 2, 2, 1, 0, 2])
  path = tmp_path / "misclassified.png"
  fig = plots.plot_misclassified(images, labels, predictions, ["a", "b", "c"], str(path), 2)

  drawn = [ax for ax in fig.axes if ax.images]
  assert [ax.get_title() for ax in drawn] == ["true: b / predicted: c", "true: a / predicted: b"]
  np.testing.assert_allclose(drawn[0].images[0].get_array(), images[1])
  assert fig.get_suptitle() == "3 of 6 misclassified (the first 2 shown)"
  assert _is_png(path)
  _read_png(path, fig)

  perfect = plots.plot_misclassified(images, labels, labels, None, str(tmp_path / "none.png"))
  assert not any(ax.images for ax in perfect.axes)
  assert _is_png(tmp_path / "none.png")
