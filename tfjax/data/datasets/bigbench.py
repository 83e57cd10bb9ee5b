"""TFDS builder `bigbench`: four BIG-bench tasks as entailment, multiple-choice and
summarisation datasets.

BIG-bench (Srivastava et al. 2023) ships its tasks as `task.json` files of prompt strings with
scored answers or target texts; the PyPI source archive `bigbench-1.0.0.tar.gz` holds them all.
We read four straight from that archive, found in the build's manual dir, and parse each prompt
into fields for GPT-1-style fine-tuning (Radford et al. 2018, §3.3) or for summarisation:

  bigbench/epistemic_reasoning         PREMISE, HYPOTHESIS, LABEL: entailment / non-entailment
  bigbench/vitaminc_fact_verification  PREMISE (the Wikipedia title and passage), HYPOTHESIS (the
                                       claim), LABEL: True / False / Neither (Schuster et al.
                                       2021, VitaminC)
  bigbench/social_iqa                  CONTEXT (situation and question), CHOICES (3, in the
                                       file's order), LABEL: index of the right one (Sap et al.
                                       2019, Social IQa)
  bigbench/gem_xsum                    ARTICLE (a BBC article, a sentence a line), SUMMARY (its
                                       one-sentence human summary): 1,001 examples of GEM's
                                       XSum test set (Narayan et al. 2018; Gehrmann et al. 2021),
                                       the task `gem/xsum`

Canary: BIG-bench's task files carry a canary string asking that their text never appear in
training corpora. Never commit or redistribute their text (tests use invented examples in the
same layout); read it from the downloaded archive at build time only. Do not `pip install
bigbench` (it pulls TensorFlow, t5 and seqio): download the archive with `--no-deps` (see
`download_command`) and leave it packed.

An example that does not parse is an error naming the task and the example's index. social_iqa
has two known defects, dropped with a log line: 4 examples with only 2 answers, and 5 inputs
repeated with the same answers but a different right one (no right answer to learn or score).
gem/xsum's examples are {input, target, comment}: one target string each, and the input is the
bare article (the task's `example_input_prefix` is added by BIG-bench when it prompts, so there
is nothing to strip). Splits are 80/10/10 from a SHA-256 of the input (repeats share a split),
or for vitaminc_fact_verification of the Wikipedia title (see `split_key`); gem_xsum's are 806 /
89 / 106. Importing this module registers the builder.
"""

import collections
import json
import shlex
import tarfile
from collections.abc import Iterator, Sequence
from typing import Any

import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from tfjax.data.datasets.builder import (
  CHOICES,
  CONTEXT,
  LABEL,
  OfflineBuilder,
  multiple_choice_features,
)

PACKAGE_VERSION = "1.0.0"
ARCHIVE = f"bigbench-{PACKAGE_VERSION}.tar.gz"
# The member of the archive holding a task's examples.
TASK_MEMBER = f"bigbench-{PACKAGE_VERSION}/bigbench/benchmark_tasks/{{task}}/task.json"
# The features of the entailment tasks (those of the multiple-choice one: CONTEXT, CHOICES, LABEL).
PREMISE, HYPOTHESIS = "premise", "hypothesis"
# The classes of each entailment task, as its `target_scores` name them.
ENTAILMENT_LABELS = {
  "epistemic_reasoning": ("entailment", "non-entailment"),
  "vitaminc_fact_verification": ("True", "False", "Neither"),
}
NUM_CHOICES = {"social_iqa": 3}
# The features of the summarisation tasks, and the tasks. A task in a folder of the archive
# (gem/xsum) is the config of its path with "_" for "/" (gem_xsum): TASK_PATHS.
ARTICLE, SUMMARY = "article", "summary"
SUMMARY_TASKS = ("gem_xsum",)
TASK_PATHS = {"gem_xsum": "gem/xsum"}

# The (prefix, separator) of each entailment task's prompts: "Premise: <premise> Hypothesis:
# <hypothesis>"; "<title>: <passage>\nClaim: <claim>", whose premise keeps the title (evidence).
ENTAILMENT_FORMS = {
  "epistemic_reasoning": ("Premise: ", " Hypothesis: "),
  "vitaminc_fact_verification": ("", "\nClaim: "),
}

_CITATION = """\
@article{srivastava2023beyond,
  author  = {Aarohi Srivastava and others},
  title   = {Beyond the Imitation Game: Quantifying and extrapolating the capabilities of
             language models},
  journal = {Transactions on Machine Learning Research},
  year    = {2023}
}
"""


def download_command(directory: epath.PathLike) -> str:
  """The shell command that puts the archive in `directory`: pip >= 24.1 refuses this sdist
  ("cannot declare direct URL dependencies", even with --no-deps), so a pip < 24.1 fetches it."""
  return (
    "python3 -m venv /tmp/pip24 && /tmp/pip24/bin/pip install -q 'pip<24.1' && "
    f"/tmp/pip24/bin/pip download --no-deps bigbench=={PACKAGE_VERSION} -d "
    f"{shlex.quote(str(directory))}"
  )


def archive_path(dl_manager: tfds.download.DownloadManager) -> epath.Path:
  """The archive in the build's manual dir (<data_dir>/downloads/manual unless given)."""
  try:
    directory = dl_manager.manual_dir
  except AssertionError:  # TFDS asserts when the manual dir is missing or empty.
    directory = dl_manager._manual_dir  # Set by the builder: the one it looked at.
  path = epath.Path(directory) / ARCHIVE
  if not path.is_file():
    raise FileNotFoundError(
      f"{path} not found: download the BIG-bench archive there (358 MB): "
      f"{download_command(directory)}"
    )
  return path


def read_task(archive: epath.PathLike, task: str) -> list[dict[str, Any]]:
  """The "examples" of a task's task.json, streamed out of the archive (never extracted); `task`
  is a config name (gem_xsum) or a path under benchmark_tasks (gem/xsum)."""
  member = TASK_MEMBER.format(task=TASK_PATHS.get(task, task))
  try:
    with epath.Path(archive).open("rb") as f, tarfile.open(fileobj=f, mode="r|gz") as tar:
      for info in tar:
        if info.name == member:
          return json.load(tar.extractfile(info))["examples"]
  except (tarfile.TarError, EOFError, OSError) as e:
    raise ValueError(f"{archive} is not a readable tar.gz ({e}); download it again") from e
  raise ValueError(f"{archive} has no {member}; use bigbench {PACKAGE_VERSION}'s source archive")


def _right_answer(target_scores: dict[str, int]) -> str:
  right = [choice for choice, score in target_scores.items() if score == 1]
  if len(right) != 1 or any(score not in (0, 1) for score in target_scores.values()):
    raise ValueError(f"target_scores {sorted(target_scores.values())} are not one 1, else 0s")
  return right[0]


def parse_entailment(task: str, example: dict[str, Any]) -> dict[str, Any]:
  """{PREMISE, HYPOTHESIS, LABEL (a class name)} of a prompt: prefix, premise, separator,
  hypothesis (ENTAILMENT_FORMS)."""
  prefix, separator = ENTAILMENT_FORMS[task]
  text = example["input"]
  parts = text[len(prefix) :].split(separator) if text.startswith(prefix) else []
  if len(parts) != 2 or not all(part.strip() for part in parts):
    raise ValueError(f"the input is not {prefix!r} + premise + {separator!r} + hypothesis")
  if set(example["target_scores"]) != set(ENTAILMENT_LABELS[task]):
    raise ValueError(
      f"the answers are {sorted(example['target_scores'])}, not {ENTAILMENT_LABELS[task]}"
    )
  return {PREMISE: parts[0], HYPOTHESIS: parts[1], LABEL: _right_answer(example["target_scores"])}


def parse_multiple_choice(example: dict[str, Any]) -> dict[str, Any]:
  """{CONTEXT (the input: situation and question), CHOICES (in the file's order), LABEL (the
  right one's index)}."""
  choices = list(example["target_scores"])
  context = example["input"].strip()
  if not context or not all(choice.strip() for choice in choices):
    raise ValueError("the input or an answer is empty")
  right = _right_answer(example["target_scores"])
  return {CONTEXT: context, CHOICES: choices, LABEL: choices.index(right)}


def parse_summary(example: dict[str, Any]) -> dict[str, Any]:
  """{ARTICLE (the input), SUMMARY (the target)}, each stripped of surrounding whitespace; a task
  with several references per example (a list of targets) is not one of these."""
  article, summary = example["input"], example["target"]
  if not isinstance(article, str) or not isinstance(summary, str):
    raise ValueError(
      f"the input and target are {type(article).__name__} and {type(summary).__name__}, not one "
      "article and one summary (strings)"
    )
  if not article.strip() or not summary.strip():
    raise ValueError("the input or the target is empty")
  return {ARTICLE: article.strip(), SUMMARY: summary.strip()}


def split_key(task: str, example: dict[str, Any], features: dict[str, Any]) -> str:
  """What decides an example's split: its input, but for vitaminc_fact_verification the title
  of its Wikipedia page. VitaminC pairs each claim with contrastive revisions of one passage:
  split by input, 85% of the test claims and 73% of the test passages are also in train."""
  if task != "vitaminc_fact_verification":
    return example["input"]
  title, sep, _ = features[PREMISE].partition(": ")
  if not (sep and title.strip()):
    raise ValueError("the passage does not start with '<title>: '")
  return title


def parse_task(task: str, examples: Sequence[dict[str, Any]]) -> list[tuple[int, str, dict]]:
  """(index in the file, split key, features) of the task's usable examples (see
  `drop_defects`); an example that does not parse is an error naming it."""
  parsed = []
  for i, example in enumerate(examples):
    try:
      if task in ENTAILMENT_FORMS:
        features = parse_entailment(task, example)
      elif task in SUMMARY_TASKS:
        features = parse_summary(example)
      else:
        features = parse_multiple_choice(example)
      parsed.append((i, split_key(task, example, features), features))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
      raise ValueError(
        f"bigbench/{task} example {i} does not parse ({e}); the archive is not bigbench "
        f"{PACKAGE_VERSION}'s, or its format changed: download {ARCHIVE} again"
      ) from e
  # A summarisation example has no right answer to contradict: a repeated article with another
  # summary is one more reference, in the same split (the split key is the article).
  return parsed if task in SUMMARY_TASKS else drop_defects(task, parsed)


def drop_defects(task: str, parsed: list[tuple[int, str, dict]]) -> list[tuple[int, str, dict]]:
  """`parsed` less the examples of other than NUM_CHOICES answers, and less the questions (all
  features but LABEL) seen with different right answers: no right answer to learn or score."""
  num_choices = NUM_CHOICES.get(task)
  if num_choices is not None:
    kept = [p for p in parsed if len(p[2][CHOICES]) == num_choices]
    if len(kept) < len(parsed):
      logging.warning(
        "bigbench/%s: %d examples without %d answers dropped",
        task,
        len(parsed) - len(kept),
        num_choices,
      )
    parsed = kept

  def question(features: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in features.items() if k != LABEL}, sort_keys=True)

  answers = collections.defaultdict(set)
  for _, _, features in parsed:
    answers[question(features)].add(features[LABEL])
  kept = [p for p in parsed if len(answers[question(p[2])]) == 1]
  if len(kept) < len(parsed):
    logging.warning(
      "bigbench/%s: %d examples of questions with different right answers dropped",
      task,
      len(parsed) - len(kept),
    )
  return kept


class Bigbench(OfflineBuilder):
  """Four BIG-bench tasks parsed for fine-tuning: epistemic_reasoning (2-way entailment),
  vitaminc_fact_verification (3-way fact verification), social_iqa (3-way multiple choice) and
  gem_xsum (BBC articles with one-sentence summaries, GEM's XSum), read from the bigbench 1.0.0
  source archive in the manual dir. Splits are 80/10/10 from a SHA-256 of the input (of the
  Wikipedia title for vitaminc_fact_verification)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: bigbench 1.0.0's task.json files, 80/10/10."}
  BUILDER_CONFIGS = [
    tfds.core.BuilderConfig(name="epistemic_reasoning", description="Entailment, 2 classes."),
    tfds.core.BuilderConfig(
      name="vitaminc_fact_verification", description="Fact verification, 3 classes."
    ),
    tfds.core.BuilderConfig(name="social_iqa", description="Multiple choice, 3 answers."),
    tfds.core.BuilderConfig(
      name="gem_xsum", description="Summarisation: article -> one-sentence summary (gem/xsum)."
    ),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f"Put {ARCHIVE} (358 MB, left packed) here: {download_command('<this manual dir>')}"
  )
  HOMEPAGE = "https://github.com/google/BIG-bench"
  CITATION = _CITATION
  LICENSE = "Apache-2.0 (BIG-bench)"
  SPLIT_PER_MILLE = (800, 900)  # 80% train, 10% validation, 10% test.

  def _features(self) -> tfds.features.FeaturesDict:
    if self.builder_config.name in SUMMARY_TASKS:
      return tfds.features.FeaturesDict(
        {ARTICLE: tfds.features.Text(), SUMMARY: tfds.features.Text()}
      )
    labels = ENTAILMENT_LABELS.get(self.builder_config.name)
    if labels is None:
      return multiple_choice_features()
    return tfds.features.FeaturesDict(
      {
        PREMISE: tfds.features.Text(),
        HYPOTHESIS: tfds.features.Text(),
        LABEL: tfds.features.ClassLabel(names=labels),
      }
    )

  def _supervised_keys(self) -> tuple[str, str] | None:
    return (ARTICLE, SUMMARY) if self.builder_config.name in SUMMARY_TASKS else None

  def _examples(self, dl_manager: tfds.download.DownloadManager) -> Iterator[tuple[str, str, dict]]:
    task = self.builder_config.name
    parsed = parse_task(task, read_task(archive_path(dl_manager), task))
    logging.info("bigbench/%s: %d examples", task, len(parsed))
    for i, key, features in parsed:
      # Inputs repeat (social_iqa): the index in the file is the unique key.
      yield self.split_of(key), f"{task}-{i:05d}", features
