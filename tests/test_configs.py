"""Every configs/*.py is runnable documentation: it loads, validates, and has its stated size."""

import importlib
import pathlib
import re

import pytest

from tfjax.models import bert
from tfjax.models.gpt import GPTConfig, count_params
from tfjax.training import trainer

CONFIG_NAMES = sorted(
  p.stem
  for p in (pathlib.Path(__file__).parents[1] / "configs").glob("*.py")
  if p.stem != "__init__"
)

# HF transformers' OpenAIGPTLMHeadModel / GPT2LMHeadModel (DESIGN.md §7).
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
  trainer.validate_config(module.get_config())
  assert f"--config=configs/{name}.py" in module.__doc__
  assert "Expected" in module.__doc__


@pytest.mark.parametrize("name", sorted(HF_PARAMETER_COUNTS))
def test_published_configs_have_the_hf_parameter_count(name):
  module = importlib.import_module(f"configs.{name}")
  num_params = count_params(GPTConfig.from_config(module.get_config().model))
  assert num_params == HF_PARAMETER_COUNTS[name]
  stated = re.search(r"\(([\d,]+) parameters\)", module.__doc__).group(1)
  assert int(stated.replace(",", "")) == num_params


# HF BertForPreTraining (MLM + NSP heads) and BertModel (encoder + pooler) (DESIGN.md §7).
BERT_PARAMETER_COUNTS = {
  "bert_base": (110_106_428, 109_482_240),
  "bert_large": (336_226_108, 335_141_888),
}


@pytest.mark.parametrize("name", sorted(BERT_PARAMETER_COUNTS))
def test_bert_configs_have_the_hf_parameter_counts(name):
  module = importlib.import_module(f"configs.{name}")
  config = bert.BertConfig.from_config(module.get_config().model)
  with_heads, encoder = BERT_PARAMETER_COUNTS[name]
  assert bert.count_params(config, "pretraining") == with_heads
  assert bert.count_params(config, "model") == encoder
  stated = re.search(r"\(([\d,]+) parameters with the MLM", module.__doc__).group(1)
  assert int(stated.replace(",", "")) == with_heads
