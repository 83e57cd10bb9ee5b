"""The image classifier through the trainer, on the 5,000 offline MNIST digits: its test accuracy
against its own checkpoint's predictions, the confusion matrix, the PNGs, exact resume with
augmentation and dropout on, the baselines, fine-tuning at another resolution, and the one-line
errors for data and checkpoints that do not fit."""

import json
import logging

import jax
import numpy as np
import pytest

from configs import vit_tiny
from tests.conftest import apply_overrides
from tests.tasks.bert_runs import GOLDEN, Run, assert_trees_equal, run_once, train_losses
from tfjax.data import images
from tfjax.hub import vit as hub_vit
from tfjax.models import vit
from tfjax.nn.stack import unstack_layers
from tfjax.tasks import registry
from tfjax.tasks.image_classification import pixels
from tfjax.training import checkpoint

KEY = jax.random.PRNGKey(0)
TINY = {
  **vit_tiny.SECONDS_OVERRIDES,
  "model.dropout_rate": 0.1,  # a resumed run must restore the rng as well as the data
  "data.train_split": "train[:200]",
  "data.test_split": "test[:40]",
}


def vit_config(tfds_dir: str, **overrides) -> object:
  return apply_overrides(
    vit_tiny.get_config(), {**TINY, "data.tfds_data_dir": tfds_dir, **overrides}
  )


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory, tfds_dir) -> Run:
  workdir = tmp_path_factory.mktemp("vit") / "workdir"
  return run_once(vit_config(tfds_dir), workdir)


def test_a_vit_run_reports_test_accuracy_of_its_checkpoint_and_draws_its_pngs(vit_run):
  workdir, config, final = vit_run.workdir, vit_run.config, vit_run.final
  assert final["step"] == 4 and json.loads((workdir / "final_metrics.json").read_text()) == final

  # The reference: the test images read again, predictions of the final checkpoint's params.
  data = images.prepare_image_data(config.data)
  model_config = vit.ViTConfig.from_config(
    json.loads((workdir / "config.json").read_text())["model"]
  )
  model = vit.ViT(model_config)
  params = checkpoint.restore_params(str(workdir), vit.abstract_params(model))
  logits = model.apply({"params": params}, pixels(data.test.image, model_config.image_size))
  predicted = np.asarray(logits).argmax(-1)
  assert final["test_accuracy"] == pytest.approx(np.mean(predicted == data.test.label))
  majority = np.bincount(data.train.label, minlength=10).argmax()
  assert final["test_majority_class_accuracy"] == pytest.approx(
    np.mean(data.test.label == majority)
  )

  matrix = np.array(json.loads((workdir / "confusion_matrix.json").read_text())["counts"])
  assert matrix.sum() == len(data.test) == 40
  np.testing.assert_array_equal(matrix.sum(1), np.bincount(data.test.label, minlength=10))
  assert np.trace(matrix) / matrix.sum() == pytest.approx(final["test_accuracy"])
  for name in ("confusion_matrix.png", "misclassified.png", "attention.png", "loss.png"):
    assert (workdir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_resumed_run_with_augmentation_and_dropout_gives_the_uninterrupted_losses(
  tmp_path, tfds_dir, vit_run, caplog
):
  assert vit_run.config.data.crop_padding > 0 and vit_run.config.model.dropout_rate > 0
  workdir = tmp_path / "resumed"
  no_test = {"data.test_split": ""}  # the report is not what is compared: skip its work
  registry.train(vit_config(tfds_dir, **no_test, **{"train.num_steps": 2}), str(workdir))
  with caplog.at_level(logging.WARNING):
    final = registry.train(vit_config(tfds_dir, **no_test), str(workdir))
  assert "Resumed from step 2" in caplog.text and final["step"] == 4
  expected, resumed = train_losses(vit_run.workdir), train_losses(workdir)
  assert sorted(resumed) == sorted(expected) == [1, 2, 3, 4]
  np.testing.assert_allclose(
    [resumed[s] for s in range(1, 5)], [expected[s] for s in range(1, 5)], rtol=1e-6, atol=0
  )


@pytest.mark.parametrize("architecture", ["cnn", "linear"])
def test_the_baselines_train_through_the_same_task(tmp_path, tfds_dir, architecture):
  module = {"cnn": "cnn_tiny", "linear": "softmax_regression"}[architecture]
  config = __import__(f"configs.{module}", fromlist=["get_config"]).get_config()
  overrides = {k: v for k, v in TINY.items() if not k.startswith("model.")}
  config = apply_overrides(config, {**overrides, "data.tfds_data_dir": tfds_dir})
  final = run_once(config, tmp_path / architecture).final
  assert final["step"] == 4 and 0.0 <= final["test_accuracy"] <= 1.0
  assert not (tmp_path / architecture / "attention.png").exists()  # a ViT's own


def test_fine_tuning_at_another_resolution_resamples_the_position_table(tmp_path, tfds_dir):
  low = {"model.image_size": 14, "data.image_size": 14, "train.num_steps": 2, "data.test_split": ""}
  source = tmp_path / "low"
  run_once(vit_config(tfds_dir, **low), source)  # 2x2 patches of 7x7
  high = {"init.checkpoint": str(source), "train.num_steps": 2, "data.test_split": ""}
  config = vit_config(tfds_dir, **high)
  with pytest.raises(ValueError, match=r"was trained on 14x14 images \(2x2 patches\), the model "
                     r"takes 28x28 \(4x4\); set --config.init.resample_posemb=True"):  # fmt: skip
    registry.train(config, str(tmp_path / "refused"))
  assert not (tmp_path / "refused").exists()  # refused before the run claims a workdir

  config.init.resample_posemb = True
  task = registry.make_task(config)
  task.prepare_data(str(tmp_path / "high"), 0, 1)
  fresh = task.init_params(KEY)
  started = task.initial_params(fresh)
  trained = checkpoint.restore_params(
    str(source), vit.abstract_params(vit.ViT(task.model_config.replace(image_size=14)))
  )
  table = trained["vit"]["position_embed"]["embedding"]
  expected = vit.resample_posemb(table, (2, 2), (4, 4))
  np.testing.assert_allclose(started["vit"]["position_embed"]["embedding"], expected)
  assert_trees_equal(started["vit"]["layer_0"], trained["vit"]["layer_0"])
  assert_trees_equal(started["classifier"], fresh["classifier"])  # §3.2: a new zero head
  assert run_once(config, tmp_path / "high").final["step"] == 2


def test_data_that_does_not_fit_the_model_is_a_one_line_error(tmp_path, tfds_dir):
  config = vit_config(tfds_dir, **{"model.num_channels": 3})
  with pytest.raises(ValueError, match=r"has 1-channel images but model.num_channels=3; set "):
    registry.train(config, str(tmp_path / "a"))
  config = vit_config(tfds_dir, **{"model.image_size": 21})
  with pytest.raises(ValueError, match=r"the images are 28x28 .* but model.image_size=21; set "
                     r"--config.data.image_size=21"):  # fmt: skip
    registry.train(config, str(tmp_path / "b"))
  with pytest.raises(ValueError, match=r"model.image_size=30 is not divisible by model.patch_size"):
    registry.make_task(vit_config(tfds_dir, **{"model.image_size": 30}))


def test_fine_tuning_from_an_hf_vit_model_takes_its_architecture_and_drops_its_pooler(tfds_dir):
  """The HF golden ViTModel (32x32x3, patch 8, d 32, 4 heads, pooler) as init.checkpoint of a
  48x48 scanned model with other sizes set: the checkpoint's architecture wins, the pooler goes,
  the position table is resampled from 4x4 to 6x6 and the layers are stacked."""
  golden = GOLDEN / "vit_tiny_model"
  overrides = {
    "init.checkpoint": str(golden),
    "init.resample_posemb": True,
    "model.image_size": 48,
    "model.scan_layers": True,
    "model.num_heads": 2,  # shapes cannot tell: taken from the checkpoint
    "model.patch_size": 4,
  }
  task = registry.make_task(vit_config(tfds_dir, **overrides))
  cfg = task.model_config
  assert (cfg.num_heads, cfg.d_model, cfg.patch_size, cfg.num_channels) == (4, 32, 8, 3)
  assert (cfg.image_size, cfg.scan_layers, cfg.pre_logits) == (48, True, False)
  with pytest.raises(ValueError, match=r"with the architecture of init.checkpoint=.*: model.image"
                     r"_size=28 is not divisible by model.patch_size=8"):  # fmt: skip
    registry.make_task(vit_config(tfds_dir, **{"init.checkpoint": str(golden)}))

  fresh = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), vit.abstract_params(vit.ViT(cfg)))
  started = task.initial_params(fresh)
  _, hf_params, _ = hub_vit.load_vit(golden)
  assert "pre_logits" in hf_params and "pre_logits" not in started["vit"]
  np.testing.assert_allclose(
    started["vit"]["position_embed"]["embedding"],
    vit.resample_posemb(hf_params["position_embed"]["embedding"], (4, 4), (6, 6)),
  )
  assert_trees_equal(
    unstack_layers(started["vit"])["layer_1"], jax.device_get(hf_params["layer_1"])
  )
