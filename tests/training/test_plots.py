"""Plots are written as valid, non-empty PNG files."""

import numpy as np
import pytest

from tfjax.training import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
  data = path.read_bytes()
  assert len(data) > 1000 and data[:8] == PNG_SIGNATURE


def test_loss_curves_png(tmp_path):
  records = [{"step": s, "split": "train", "loss": 5.0 / s} for s in range(1, 50)]
  records += [{"step": s, "split": "eval", "loss": 6.0 / s} for s in (10, 20, 30, 40)]
  records += [{"step": 5, "split": "train", "tokens_per_s": 1e3}]  # no loss: skipped
  path = tmp_path / "plots" / "loss.png"
  plots.plot_loss_curves(records, str(path), log_scale=True)
  _assert_png(path)


def test_loss_curves_without_loss_raises(tmp_path):
  with pytest.raises(ValueError, match="loss"):
    plots.plot_loss_curves([{"step": 1, "split": "train", "lr": 0.1}], str(tmp_path / "x.png"))


def test_attention_maps_png(tmp_path):
  weights = np.random.default_rng(0).random((3, 4, 4))
  weights /= weights.sum(-1, keepdims=True)  # [heads, q, k], rows sum to 1
  path = tmp_path / "attention.png"
  plots.plot_attention_maps(weights, ["The", "city", "of", "Paris"], str(path))
  _assert_png(path)
  with pytest.raises(ValueError, match="key tokens"):
    plots.plot_attention_maps(weights, ["too", "few"], str(path))
