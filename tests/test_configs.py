"""Every configs/*.py is runnable documentation: it loads, validates, and has its stated size."""

import functools
import importlib
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import transformer_base
from tests.conftest import apply_overrides
from tfjax.data import seq2seq as translation_data
from tfjax.models import bert, transformer, vit
from tfjax.models.config import count_params
from tfjax.models.gpt import GPT, GPTConfig
from tfjax.tasks import registry
from tfjax.training import optimizer
from tfjax.training.state import TrainState
from tfjax.training.step import train_step

CONFIG_NAMES = sorted(
  p.stem
  for p in (pathlib.Path(__file__).parents[1] / "configs").glob("*.py")
  if p.stem != "__init__"
)

# HF transformers' OpenAIGPTLMHeadModel / GPT2LMHeadModel.
HF_PARAMETER_COUNTS = {
  "gpt1": 116_534_784,
  "gpt2_small": 124_439_808,
  "gpt2_medium": 354_823_168,
  "gpt2_large": 774_030_080,
  "gpt2_xl": 1_557_611_200,
}


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_validates_and_its_docstring_gives_a_command(name):
  module = importlib.import_module(f"configs.{name}")
  registry.make_task(module.get_config())
  assert f"--config=configs/{name}.py" in module.__doc__
  assert "Expected" in module.__doc__


@pytest.mark.parametrize("name", sorted(HF_PARAMETER_COUNTS))
def test_published_configs_have_the_hf_parameter_count(name):
  module = importlib.import_module(f"configs.{name}")
  num_params = count_params(GPT(GPTConfig.from_config(module.get_config().model)), (1, 1))
  assert num_params == HF_PARAMETER_COUNTS[name]
  stated = re.search(r"\(([\d,]+) parameters\)", module.__doc__).group(1)
  assert int(stated.replace(",", "")) == num_params


# HF BertForPreTraining (MLM + NSP heads) and BertModel (encoder + pooler).
BERT_PARAMETER_COUNTS = {
  "bert_base": (110_106_428, 109_482_240),
  "bert_large": (336_226_108, 335_141_888),
}


@pytest.mark.parametrize("name", sorted(BERT_PARAMETER_COUNTS))
def test_bert_configs_have_the_hf_parameter_counts(name):
  module = importlib.import_module(f"configs.{name}")
  config = bert.BertConfig.from_config(module.get_config().model)
  with_heads, encoder = BERT_PARAMETER_COUNTS[name]
  assert count_params(bert.BertForPreTraining(config), (1, 1)) == with_heads
  assert count_params(bert.BertModel(config), (1, 1)) == encoder
  stated = re.search(r"\(([\d,]+) parameters with the MLM", module.__doc__).group(1)
  assert int(stated.replace(",", "")) == with_heads


# Vaswani et al. 2017, Table 3 (millions, a shared 37k vocabulary): ours from `jax.eval_shape`.
TRANSFORMER_PARAMETER_COUNTS = {"transformer_base": 65e6, "transformer_big": 213e6}


@pytest.mark.parametrize("name", sorted(TRANSFORMER_PARAMETER_COUNTS))
def test_transformer_configs_are_within_5_percent_of_table_3(name):
  module = importlib.import_module(f"configs.{name}")
  model_config = transformer.TransformerConfig.from_config(module.get_config().model)
  num_params = count_params(transformer.Transformer(model_config), (1, 1), (1, 1))
  assert abs(num_params / TRANSFORMER_PARAMETER_COUNTS[name] - 1) < 0.05
  stated = re.search(r"\(([\d,]+) parameters;", module.__doc__).group(1)
  assert int(stated.replace(",", "")) == num_params


# HF ViTForImageClassification at 224, patch 16, 1000 classes (= the original vit_jax counts).
VIT_PARAMETER_COUNTS = {
  "vit_ti16": 5_717_416,
  "vit_s16": 22_050_664,
  "vit_b16": 86_567_656,
  "vit_l16": 304_326_632,
  "vit_tiny": 139_018,
}


@pytest.mark.parametrize("name", sorted(VIT_PARAMETER_COUNTS))
def test_vit_configs_have_the_hf_parameter_counts(name):
  module = importlib.import_module(f"configs.{name}")
  config = vit.ViTConfig.from_config(module.get_config().model)
  spec = (1, config.image_size, config.image_size, config.num_channels)
  num_params = count_params(vit.ViT(config), jax.ShapeDtypeStruct(spec, jnp.float32))
  assert num_params == VIT_PARAMETER_COUNTS[name]
  if name != "vit_tiny":
    stated = re.search(r"\(([\d,]+) parameters", module.__doc__).group(1)
    assert int(stated.replace(",", "")) == num_params


@pytest.mark.parametrize("row", sorted(transformer_base.TABLE_3))
def test_table_3_rows_are_overrides_that_build_and_train_one_step(row):
  """Each row's overrides on transformer_base: the paper's size where Table 3 gives one (within
  10%: the table rounds, and its vocabulary is "about" 37k), and one real training step (of a
  1-layer, 64-token-vocabulary copy, unless the row sets N) with a finite loss. The layers are
  scanned, so that a row's compilation does not grow with its N."""
  overrides, paper_millions = transformer_base.TABLE_3[row]
  config = apply_overrides(transformer_base.get_config(), overrides)
  registry.make_task(config)
  model_config = transformer.TransformerConfig.from_config(config.model)
  if paper_millions is not None:
    num_params = count_params(transformer.Transformer(model_config), (1, 1), (1, 1))
    assert abs(num_params / (paper_millions * 1e6) - 1) < 0.10

  small = {"model.vocab_size": 64, "model.max_len": 16, "data.max_len": 16}
  small["model.scan_layers"] = True
  if "model.num_layers" not in overrides:
    small["model.num_layers"] = 1
  task = registry.make_task(apply_overrides(config, small))
  tx, schedule = optimizer.make_optimizer(config.train, model_config.d_model)
  state = TrainState.create(jax.jit(task.init_params)(jax.random.key(0)), tx, jax.random.key(1))
  rng = np.random.default_rng(0)
  pairs = translation_data.Pairs(
    [rng.integers(4, 64, size=5) for _ in range(4)], [rng.integers(4, 64, size=6) for _ in range(4)]
  )
  batch = translation_data.pack_pairs(pairs, 16, bos_id=2, eos_id=3)
  step = jax.jit(
    functools.partial(
      train_step, loss_fn=task.loss_fn(task.model()), optimizer=tx, schedule=schedule
    )
  )
  state, metrics = step(state, batch)
  assert int(state.step) == 1 and np.isfinite(float(metrics["loss"]))
  assert float(metrics["num_tokens"]) == 4 * 7
