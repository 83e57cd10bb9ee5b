"""LoRA (config.lora) on the fine-tuning tasks through the trainer (BERT classification, GPT
fine-tuning, ViT), on tiny runs: the pre-trained weights stay bit for bit, only the adapters and
the head train and hold optimizer state, exact resume, a LoRA workdir loading as the merged
model, rank 0 as today, and the one-line errors."""

import json
import shutil

import jax
import ml_collections
import numpy as np
import pytest

from configs import gpt_tiny_topics, vit_tiny
from tests.conftest import apply_overrides
from tests.tasks.bert_runs import (
  FINE_TUNING,
  KEY,
  Run,
  fine_tuning_config,
  pretrained_params,
  resumed_run,
  run_once,
)
from tests.tasks.lora_checks import (
  bits,
  final_params,
  flat,
  fresh_params,
  saved_optimizer_paths,
)
from tfjax.inference import load
from tfjax.models import vit
from tfjax.nn import lora
from tfjax.tasks import registry

LORA = {"lora.rank": 4, "lora.alpha": 8.0, "lora.mlp": True}


def assert_trained_only_adapters_and_head(run: Run, pretrained: dict, body: str) -> None:
  final, fresh = flat(final_params(run)), flat(fresh_params(run))
  pretrained = {f"{body}/{k}": v for k, v in flat(pretrained).items()}
  adapters = [k for k in final if k.endswith(lora.ADAPTERS)]
  assert adapters and set(final) == set(pretrained) | set(adapters) | {
    k for k in final if not k.startswith(f"{body}/")
  }
  for path, value in pretrained.items():  # every base leaf, bit for bit
    np.testing.assert_array_equal(bits(final[path]), bits(value), err_msg=path)
  for path in adapters:
    assert np.abs(np.asarray(final[path]) - np.asarray(fresh[path])).max() > 1e-6, path
  heads = [k for k in final if not k.startswith(f"{body}/")]
  assert heads and all(np.any(final[k] != fresh[k]) for k in heads if k.endswith("kernel"))
  # The optimizer state holds moments of the adapters and the head only.
  moments = saved_optimizer_paths(run, run.final["step"])
  assert moments and len(moments) == 2 * (len(adapters) + len(heads))
  assert all(path.endswith(lora.ADAPTERS) or f"/{body}/" not in path for path in moments)


# --- BERT classification ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert_lora(tmp_path_factory, tfds_dir, pretrained) -> Run:
  workdir = tmp_path_factory.mktemp("bert_lora") / "workdir"
  return run_once(fine_tuning_config(tfds_dir, pretrained.workdir, **LORA), workdir)


def test_a_lora_classifier_trains_only_the_adapters_and_the_head(bert_lora, pretrained):
  assert_trained_only_adapters_and_head(bert_lora, pretrained_params(pretrained)["bert"], "bert")
  assert 0.0 <= bert_lora.final["test_accuracy"] <= 1.0


def test_a_resumed_lora_run_gives_the_uninterrupted_losses_and_weights(
  tmp_path, tfds_dir, pretrained, bert_lora, caplog
):
  workdir = tmp_path / "resumed"
  config = lambda **o: fine_tuning_config(tfds_dir, pretrained.workdir, **LORA, **o)
  final = resumed_run(config, bert_lora, workdir, caplog)
  want, got = flat(final_params(bert_lora)), flat(final_params(Run(workdir, config(), final)))
  for path in want:
    np.testing.assert_allclose(got[path], want[path], rtol=1e-6, atol=1e-7, err_msg=path)


def test_resuming_with_other_lora_settings_names_them(tmp_path, tfds_dir, pretrained, bert_lora):
  workdir = tmp_path / "copy"
  shutil.copytree(bert_lora.workdir, workdir)
  config = fine_tuning_config(
    tfds_dir, pretrained.workdir, **{**LORA, "lora.alpha": 2.0, "train.num_steps": 4}
  )
  with pytest.raises(ValueError, match=r"holds a run with another config \(lora: checkpoint LoRA"):
    registry.train(config, str(workdir))


def test_rank_0_is_full_fine_tuning_as_before(tfds_dir, pretrained):
  """lora.rank=0 (the configs' default) and no lora section build the same task: no adapters,
  every parameter trained, the same fresh parameters."""
  with_rank_0 = fine_tuning_config(tfds_dir, pretrained.workdir, **{"lora.rank": 0})
  without = fine_tuning_config(tfds_dir, pretrained.workdir)
  del without.lora
  tasks = [registry.make_task(c) for c in (with_rank_0, without)]
  for task in tasks:
    task.prepare_data("/nonexistent-fine-tuning-workdir", 0, 1)
  assert tasks[0].lora is None and tasks[0].trainable() is None
  assert tasks[0].model() == tasks[1].model()
  params = [flat(jax.jit(task.init_params)(KEY)) for task in tasks]
  assert set(params[0]) == set(params[1]) and not any("lora" in k for k in params[0])
  for path in params[0]:
    np.testing.assert_array_equal(bits(params[0][path]), bits(params[1][path]), err_msg=path)


def test_a_rank_larger_than_the_pretrained_width_is_a_one_line_error(
  tmp_path, tfds_dir, pretrained
):
  d_model = pretrained.config.model.d_model
  config = fine_tuning_config(tfds_dir, pretrained.workdir, **{"lora.rank": d_model + 1})
  message = rf"lora.rank={d_model + 1} is larger than the 'qkv' projection \({d_model} -> "
  with pytest.raises(ValueError, match=message):
    registry.train(config, str(tmp_path / "w"))


@pytest.mark.parametrize(
  "overrides, message",
  [
    ({"init.load_weights": False}, r"^lora.rank=4: LoRA trains adapters on frozen pre-trained "),
    ({"lora.rank": -2}, r"^lora.rank=-2 is negative; use 0 \(no LoRA\) or a rank >= 1"),
    ({"lora.alpha": 0.0}, r"^lora.alpha=0.0 must be > 0"),
  ],
  ids=["from_scratch", "negative_rank", "zero_alpha"],
)
def test_bad_lora_settings_are_rejected_before_anything(
  tmp_path, tfds_dir, pretrained, overrides, message
):
  config = fine_tuning_config(tfds_dir, pretrained.workdir, **{**LORA, **overrides})
  with pytest.raises(ValueError, match=message):
    registry.train(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_lora_on_language_model_pretraining_is_a_one_line_error(tmp_path, tiny_config):
  tiny_config.lora = ml_collections.ConfigDict({"rank": 8})
  message = (
    r"^lora.rank=8: .* but this 'lm' run trains from scratch; set lora.rank=0, or use a "
    "fine-tuning task"
  )
  with pytest.raises(ValueError, match=message):
    registry.train(tiny_config, str(tmp_path / "w"))


# --- GPT-1-style fine-tuning: the added special-token rows stay frozen too --------------------


def test_a_lora_gpt_trains_only_the_adapters_and_the_classifier(tmp_path, gpt_pretrained):
  values = {
    **FINE_TUNING,
    **LORA,
    "data.tfds_data_dir": gpt_pretrained.config.data.tfds_data_dir,
    "init.checkpoint": str(gpt_pretrained.workdir),
  }
  config = apply_overrides(gpt_tiny_topics.get_config(), values)
  run = run_once(config, tmp_path / "gpt_lora")
  task = registry.make_task(config)
  task.prepare_data(str(run.workdir), 0, 1)
  # The LM with start, delimiter and extract appended: those rows are frozen with the table.
  assert_trained_only_adapters_and_head(run, task.pretrained_body(), "gpt")
  assert json.loads((run.workdir / "config.json").read_text())["lora"]["rank"] == 4


# --- ViT from init.checkpoint, and loading the LoRA run as an ordinary ViT --------------------


def test_a_lora_vit_trains_only_the_adapters_and_head_and_loads_merged(tmp_path, tfds_dir):
  vit_values = {**vit_tiny.SECONDS_OVERRIDES, "data.tfds_data_dir": tfds_dir}
  vit_values.update({"data.train_split": "train[:200]", "data.test_split": "test[:16]"})
  source = run_once(
    apply_overrides(vit_tiny.get_config(), {**vit_values, "train.num_steps": 2}),
    tmp_path / "source",
  )
  # 4 steps: the first at learning rate 0, then the zero head must move before B gets gradients.
  values = {**vit_values, **LORA, "init.checkpoint": str(source.workdir)}
  run = run_once(apply_overrides(vit_tiny.get_config(), values), tmp_path / "lora")
  body = load.load(source.workdir, "vit").params["vit"]
  assert_trained_only_adapters_and_head(run, body, "vit")

  config, merged, _ = load.load(run.workdir, "vit")
  assert config.lora is None and not lora.has_adapters(merged)
  images = jax.random.uniform(KEY, (4, 28, 28, 1), minval=-1.0, maxval=1.0)
  adapted = vit.ViT(config.replace(lora=lora.LoRA(4, 8.0, True)))
  np.testing.assert_allclose(
    vit.ViT(config).apply({"params": merged}, images),
    adapted.apply({"params": final_params(run)}, images),
    rtol=1e-5,
    atol=1e-5,
  )
