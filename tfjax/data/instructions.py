"""An instruction mixture: several real tasks rendered as prompts in natural English, for the
prompt -> response task (`data.name = "instructions"`), as FLAN (Wei et al. 2022, §2) renders
its datasets with templates; at this scale it shows what instruction fine-tuning does.

  summarise     wiki_vital_articles: the lead extract -> its short description    ROUGE
  topic         wiki_topics: the lead extract -> its topic's name                   exact match
  translate_de  gettext_translations/en-de: English -> German                       BLEU
  sentiment     rotten_tomatoes: a review -> "positive" (fresh) or "negative"       exact match

Each task has a few templates; the LAST is held out: a training example is rendered with one of
the others, chosen from its index in the split and the seed, every eval and test example with
the held-out one, so evaluation measures following a phrasing never trained on. A cap per task
(`data.max_train_per_task`, the first pairs of the split) keeps the big tasks from drowning the
small. Long inputs keep their first `max_input_words` words (the lead's first sentences carry
the description and the topic), and the held-out templates of the long-input tasks put the
instruction after the text, so a prompt still too long, cut from its start (`data.cut_from`),
keeps it.

Pairs are read by `prompt_response.read_pairs` (a ClassLabel gives its class name) and come
back as one `TextPairs` per split, each pair with its task name.
"""

import dataclasses
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from tfjax.data import pipeline
from tfjax.data.text_pairs import SplitPairs, TextPairs, read_pairs

NAME = "instructions"  # data.name of a mixture
TEXT = "{text}"  # where a template takes the input
METRICS = ("rouge", "exact_match", "bleu")  # scores of `tfjax.tasks.text_metrics`


@dataclasses.dataclass(frozen=True)
class InstructionTask:
  """One task of the mixture: where its (input, answer) pairs come from, how they are scored,
  and its templates (each holds TEXT once; the last is held out for eval and test)."""

  dataset: str  # a TFDS name[/config]
  input_field: str
  answer_field: str  # a text or a ClassLabel (its class name)
  metric: str  # one of METRICS
  templates: tuple[str, ...]
  splits: tuple[str, str, str] = ("train", "validation", "test")  # train, eval, test
  answers: Mapping[str, str] | None = None  # an answer (class name) -> what the response says
  max_input_words: int | None = None  # longer inputs keep their first words

  def __post_init__(self):
    if self.metric not in METRICS:
      raise ValueError(f"metric={self.metric!r} is unknown; choose one of {METRICS}")
    if len(self.templates) < 2 or any(t.count(TEXT) != 1 for t in self.templates):
      raise ValueError(f"give at least two templates, each with {TEXT} once: {self.templates}")

  @property
  def train_templates(self) -> tuple[str, ...]:
    return self.templates[:-1]

  @property
  def held_out_template(self) -> str:
    return self.templates[-1]


TASKS: dict[str, InstructionTask] = {
  "summarise": InstructionTask(
    dataset="wiki_vital_articles",
    input_field="extract",
    answer_field="description",
    metric="rouge",
    templates=(
      "Summarise this article in a few words: {text}",
      "{text} In a few words, what is this article about?",
      "Write a short description of the following text. {text}",
      "{text} Give a one-line description of the article above.",
    ),
    max_input_words=32,
  ),
  "topic": InstructionTask(
    dataset="wiki_topics",
    input_field="text",
    answer_field="label",
    metric="exact_match",
    templates=(
      "What is the topic of this text? {text}",
      "{text} Which subject area does this article belong to?",
      "Classify the article by topic: {text}",
      "{text} Under which of Wikipedia's topics does the text above fall?",
    ),
    max_input_words=32,
  ),
  "translate_de": InstructionTask(
    dataset="gettext_translations/en-de",
    input_field="en",
    answer_field="de",
    metric="bleu",
    templates=(
      "Translate to German: {text}",
      "{text} Translate this sentence into German.",
      "English: {text} German:",
      "How would you say this in German? {text}",
    ),
  ),
  "sentiment": InstructionTask(
    dataset="rotten_tomatoes",
    input_field="text",
    answer_field="label",
    metric="exact_match",
    templates=(
      "Is this review positive or negative? {text}",
      "{text} Did the critic like the film? Answer positive or negative.",
      "Review: {text} Sentiment:",
      "What is the sentiment of this movie review, positive or negative? {text}",
    ),
    answers={"fresh": "positive", "rotten": "negative"},  # its ClassLabel names
  ),
}


def parse_tasks(tasks: str) -> list[str]:
  """The task names of `data.tasks` ("summarise,topic"), each known and named once."""
  names = [name.strip() for name in tasks.split(",") if name.strip()]
  if not names:
    raise ValueError(f"data.tasks is empty; name tasks of the mixture from {sorted(TASKS)}")
  unknown = [name for name in names if name not in TASKS]
  if unknown:
    raise ValueError(f"data.tasks names unknown tasks {unknown}; choose from {sorted(TASKS)}")
  if len(set(names)) < len(names):
    raise ValueError(f"data.tasks={tasks!r} names a task twice; name each once")
  return names


def check_config(data_config: Any) -> list[str]:
  """The mixture's keys: data.tasks (known names) and data.max_train_per_task (>= 1)."""
  if data_config.max_train_per_task < 1:
    raise ValueError(
      f"data.max_train_per_task={data_config.max_train_per_task} keeps no training pair of a "
      "task; set it to at least 1"
    )
  return parse_tasks(data_config.tasks)


# ------------------------------------------------------------------------------ rendering


def render(task: InstructionTask, template: str, text: str) -> str:
  """The prompt of `text` in `template` (its first `task.max_input_words` words, if set)."""
  if task.max_input_words is not None:
    text = " ".join(text.split()[: task.max_input_words])
  return template.replace(TEXT, text)


def template_choices(task_name: str, indices: Sequence[int], count: int, seed: int) -> np.ndarray:
  """For each example index, which of `count` training templates renders it: drawn from the
  seed and the task's name, as a function of the index alone (a cap keeps the choices)."""
  if not len(indices):
    return np.zeros(0, np.int64)
  rng = np.random.default_rng([seed, zlib.crc32(task_name.encode())])
  return rng.integers(count, size=max(indices) + 1)[np.asarray(indices)]


def render_pairs(
  task_name: str, task: InstructionTask, pairs: TextPairs, train: bool, seed: int
) -> TextPairs:
  """`pairs` of (input, answer) as (prompt, response): prompts in a training template
  (`template_choices`) or, `train=False`, in the held-out one; answers mapped by
  `task.answers`."""
  if train:
    choices = template_choices(task_name, pairs.indices, len(task.train_templates), seed)
    templates = [task.train_templates[c] for c in choices]
  else:
    templates = [task.held_out_template] * len(pairs)
  answers = task.answers or {}
  return dataclasses.replace(
    pairs,
    prompts=[render(task, t, text) for t, text in zip(templates, pairs.prompts, strict=True)],
    responses=[answers.get(a, a) for a in pairs.responses],
    tasks=[task_name] * len(pairs),
  )


def concatenate(parts: Sequence[TextPairs], name: str) -> TextPairs:
  """The pairs of `parts` one after another, with their tasks."""
  return TextPairs(
    prompts=[p for part in parts for p in part.prompts],
    responses=[r for part in parts for r in part.responses],
    indices=[i for part in parts for i in part.indices],
    dropped=sum(part.dropped for part in parts),
    name=name,
    tasks=[t for part in parts for t in part.tasks or ()],
  )


# ------------------------------------------------------------------------------ the mixture


def prepared(task: InstructionTask, data_config: Any) -> pipeline.PreparedDataset:
  """The task's dataset, prepared once in `data_config.tfds_data_dir` ("" for TFDS's default)."""
  config = ml_collections.ConfigDict(
    {"name": task.dataset, "tfds_data_dir": data_config.tfds_data_dir}
  )
  return pipeline.prepare_dataset(config, {"input": task.input_field, "answer": task.answer_field})


def read_mixture(data_config: Any, seed: int) -> SplitPairs:
  """The mixture of `data_config.tasks` as train, eval and test pairs (in task order): the
  first `data_config.max_train_per_task` training pairs of each task, in its training templates;
  every eval and test pair, in its held-out template. `data_config.skip_empty` as for
  `read_pairs`."""
  names = check_config(data_config)
  parts: dict[str, list[TextPairs]] = {"train": [], "eval": [], "test": []}
  for name in names:
    task = TASKS[name]
    dataset = prepared(task, data_config)
    for role, split in zip(parts, task.splits, strict=True):
      pairs = read_pairs(
        dataset, split, task.input_field, task.answer_field, skip_empty=data_config.skip_empty
      )
      if role == "train":
        pairs = _first(pairs, data_config.max_train_per_task)
      parts[role].append(render_pairs(name, task, pairs, train=role == "train", seed=seed))
  what = lambda role: f"the instruction mixture's {role} split ({', '.join(names)})"
  return SplitPairs(**{role: concatenate(p, what(role)) for role, p in parts.items()})


def _first(pairs: TextPairs, count: int) -> TextPairs:
  return dataclasses.replace(
    pairs,
    prompts=pairs.prompts[:count],
    responses=pairs.responses[:count],
    indices=pairs.indices[:count],
  )
