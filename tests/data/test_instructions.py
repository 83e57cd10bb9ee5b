"""The instruction mixture on tiny TFDS datasets (tests/data/instruction_sets.py): templates
render in place, the held-out template is the only one of eval and test and never in train, the
cap per task, class names as answers, and the one-line errors."""

import collections

import ml_collections
import pytest
import tensorflow_datasets as tfds

from tests.data.instruction_sets import TINY_TASKS, described, en_de, reviews, use_tiny_tasks
from tfjax.data import instructions

SOURCES = {"tiny_summarise": described, "tiny_sentiment": reviews, "tiny_labels": reviews,
           "tiny_translate": en_de}  # fmt: skip
SPLITS = {"train": "train", "eval": "validation", "test": "test"}


def mixture_config(data_dir, **overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(
    dict(tasks="tiny_summarise,tiny_sentiment,tiny_translate", max_train_per_task=100,
         tfds_data_dir=str(data_dir), skip_empty=True)
  )  # fmt: skip
  config.update(overrides)
  return config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("instructions_tfds")


def read(data_dir, seed=0, **overrides) -> dict[str, instructions.TextPairs]:
  with use_tiny_tasks():
    pairs = instructions.read_mixture(mixture_config(data_dir, **overrides), seed)
  return {role: getattr(pairs, role) for role in SPLITS}


def template_of(task_name: str, prompt: str, split: str) -> int:
  """Which template renders `prompt` from an input of the task's source split (by rendering
  every input in every template: independent of the reader's order and choice)."""
  task, source = TINY_TASKS[task_name], SOURCES[task_name](split)
  found = {
    k
    for k, template in enumerate(task.templates)
    for example in source
    if instructions.render(task, template, example[task.input_field]) == prompt
  }
  assert len(found) == 1, (prompt, found)
  return found.pop()


def test_templates_render_the_input_in_place_and_keep_its_first_words():
  sentiment, summarise = instructions.TASKS["sentiment"], instructions.TASKS["summarise"]
  assert instructions.render(sentiment, sentiment.templates[0], "A fine {odd} film.") == (
    "Is this review positive or negative? A fine {odd} film."
  )
  assert instructions.render(sentiment, sentiment.held_out_template, "Dull.") == (
    "What is the sentiment of this movie review, positive or negative? Dull."
  )
  assert summarise.max_input_words == 32
  article = " ".join(f"w{i}" for i in range(50))
  assert instructions.render(summarise, "{text} Describe it.", article) == (
    " ".join(f"w{i}" for i in range(32)) + " Describe it."
  )
  for task in instructions.TASKS.values():
    assert len(task.train_templates) >= 2 and task.held_out_template == task.templates[-1]
    assert all(t.count("{text}") == 1 for t in task.templates)


def test_the_table_reads_features_its_datasets_have(tmp_path):
  """From each builder's declared features (nothing is prepared): the fields exist, and a task
  that maps class names maps exactly its ClassLabel's."""
  for name, task in instructions.TASKS.items():
    features = tfds.builder(task.dataset, data_dir=str(tmp_path)).info.features
    assert {task.input_field, task.answer_field} <= set(features.keys()), name
    if task.answers is not None:
      assert sorted(task.answers) == sorted(features[task.answer_field].names), name
  topics = tfds.builder("wiki_topics", data_dir=str(tmp_path)).info.features["label"].names
  assert "Mathematics" in topics and "Uncategorized" not in topics  # the answers, as they are


def test_the_held_out_template_is_never_trained_on_and_the_only_one_evaluated(data_dir):
  pairs = read(data_dir)
  for role, split in SPLITS.items():
    used = collections.defaultdict(set)
    for task, prompt in zip(pairs[role].tasks, pairs[role].prompts, strict=True):
      used[task].add(template_of(task, prompt, split))
    assert sorted(used) == ["tiny_sentiment", "tiny_summarise", "tiny_translate"]
    for task, templates in used.items():
      last = len(TINY_TASKS[task].templates) - 1
      if role == "train":  # several training templates, never the last
        assert last not in templates and len(templates) >= 2, (task, templates)
      else:
        assert templates == {last}, (role, task)
  # The choice is a function of the seed (and the example): another seed, other choices.
  again, other = read(data_dir)["train"], read(data_dir, seed=1)["train"]
  assert again.prompts == pairs["train"].prompts and other.prompts != pairs["train"].prompts
  assert sorted(other.prompts) != sorted(pairs["train"].prompts)


def test_the_cap_keeps_the_first_training_pairs_of_each_task_only(data_dir):
  whole, capped = read(data_dir), read(data_dir, max_train_per_task=3)
  counts = collections.Counter(capped["train"].tasks)
  assert counts == {"tiny_summarise": 3, "tiny_sentiment": 3, "tiny_translate": 3}
  full = collections.Counter(whole["train"].tasks)
  assert full == {"tiny_summarise": 11, "tiny_sentiment": 12, "tiny_translate": 12}
  assert whole["train"].dropped == 1  # the empty description
  for task in counts:
    kept = [i for t, i in zip(capped["train"].tasks, capped["train"].indices, strict=True)
            if t == task]  # fmt: skip
    first = [i for t, i in zip(whole["train"].tasks, whole["train"].indices, strict=True)
             if t == task][:3]  # fmt: skip
    assert kept == first
  for role in ("eval", "test"):  # the cap is for training
    assert capped[role].prompts == whole[role].prompts


def test_labels_become_their_class_names_or_the_task_s_answers(data_dir):
  pairs = read(data_dir, tasks="tiny_sentiment,tiny_labels")["test"]
  label_of = {e["text"]: e["label"] for e in reviews("test")}
  assert len(label_of) == len(reviews("test"))  # unique texts: the reference is unambiguous
  word = {"fresh": "positive", "rotten": "negative"}
  for task, prompt, response in zip(pairs.tasks, pairs.prompts, pairs.responses, strict=True):
    template = TINY_TASKS[task].held_out_template
    prefix, suffix = template.split("{text}")
    text = prompt.removeprefix(prefix).removesuffix(suffix)
    assert response == (word[label_of[text]] if task == "tiny_sentiment" else label_of[text])
  assert set(pairs.responses) == {"positive", "negative", "fresh", "rotten"}


def test_translation_answers_are_the_german_side(data_dir):
  pairs = read(data_dir, tasks="tiny_translate")["eval"]
  german = {e["en"]: e["de"] for e in en_de("validation")}
  assert sorted(pairs.responses) == sorted(german.values())
  for prompt, response in zip(pairs.prompts, pairs.responses, strict=True):
    assert german[prompt.removeprefix("say in german ")] == response


@pytest.mark.parametrize(
  "overrides, message",
  [
    ({"tasks": "topic,poetry"}, r"data.tasks names unknown tasks \['poetry'\]; choose from \["),
    ({"tasks": " , "}, r"data.tasks is empty; name tasks of the mixture from \["),
    ({"tasks": "topic,topic"}, r"data.tasks='topic,topic' names a task twice"),
    ({"max_train_per_task": 0}, r"data.max_train_per_task=0 keeps no training pair of a task; "),
  ],
  ids=["unknown", "empty", "twice", "cap"],
)
def test_a_bad_mixture_is_a_one_line_error(overrides, message):
  with pytest.raises(ValueError, match=message) as caught:
    instructions.check_config(mixture_config("/nonexistent", **overrides))
  assert "\n" not in str(caught.value)
  if overrides.get("tasks") == "topic,poetry":  # the known names are listed
    assert all(name in str(caught.value) for name in ("summarise", "translate_de", "sentiment"))
