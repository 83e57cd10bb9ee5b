"""The tasks by the name a config gives in `config.task`, and a run of the one it names.

The trainer (tfjax/training/trainer.py) is generic and imports no task: `train` looks the task
up here and hands its class to `train_and_evaluate`. A new task is one module in this package
and one line in `TASKS`.
"""

import ml_collections

from tfjax.tasks.bert_pretraining import BertPretrainingTask
from tfjax.tasks.classification import ClassificationTask
from tfjax.tasks.gpt_fine_tuning import GPTFineTuningTask
from tfjax.tasks.image_classification import ImageClassificationTask
from tfjax.tasks.lm import LanguageModelTask
from tfjax.tasks.prompt_response import PromptResponseTask
from tfjax.tasks.question_answering import QuestionAnsweringTask
from tfjax.tasks.translation import TranslationTask
from tfjax.training import trainer
from tfjax.training.task import Task

TASKS: dict[str, type[Task]] = {
  "lm": LanguageModelTask,
  "bert_pretraining": BertPretrainingTask,
  "classification": ClassificationTask,
  "gpt_fine_tuning": GPTFineTuningTask,
  "image_classification": ImageClassificationTask,
  "prompt_response": PromptResponseTask,
  "question_answering": QuestionAnsweringTask,
  "translation": TranslationTask,
}


def task_class(config: ml_collections.ConfigDict) -> type[Task]:
  """The Task class `config.task` names."""
  name = config.get("task")
  if name is None:
    raise ValueError(f"the config names no task; set config.task to one of {sorted(TASKS)}")
  if name not in TASKS:
    raise ValueError(f"task={name!r} is unknown; choose one of {sorted(TASKS)}")
  return TASKS[name]


def make_task(config: ml_collections.ConfigDict) -> Task:
  """The task `config.task` names, on `config`, after every check a run makes before its data
  (`trainer.validate_config`)."""
  return trainer.validate_config(config, task_class(config))


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains and evaluates the task `config.task` names, in `workdir` (resuming the run there);
  returns its final metrics. See `trainer.train_and_evaluate`."""
  return trainer.train_and_evaluate(config, workdir, task_class(config))
