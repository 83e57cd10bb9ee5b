"""The registry: every task by the name configs give it, and clear errors for other names."""

import pytest

from configs import gpt_tiny
from tfjax.tasks import registry
from tfjax.tasks.lm import LanguageModelTask


def test_the_config_names_the_task_that_is_built():
  config = gpt_tiny.get_config()
  assert config.task == "lm"
  assert type(registry.make_task(config)) is LanguageModelTask


def test_an_unknown_task_names_the_known_ones(tmp_path):
  config = gpt_tiny.get_config()
  config.task = "bert"
  with pytest.raises(ValueError, match=r"task='bert' is unknown; choose one of .*'bert_pretrain"):
    registry.train(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_a_config_without_a_task_says_how_to_name_one(tmp_path):
  config = gpt_tiny.get_config()
  del config["task"]
  with pytest.raises(ValueError, match=r"names no task; set config.task to one of .*'lm'"):
    registry.train(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()
