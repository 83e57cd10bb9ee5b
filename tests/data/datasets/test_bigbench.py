"""Tests of the bigbench TFDS builder on a tiny archive in bigbench-1.0.0.tar.gz's layout
(fake_bigbench.py).

Every example here is invented: BIG-bench's own text carries a canary and is never committed.
"""

import collections

import pytest
import tensorflow_datasets as tfds

from tests.data.datasets.fake_bigbench import (
  write_archive,
  xsum_article,
  xsum_examples,
  xsum_summary,
)
from tfjax.data.datasets import bigbench

SPLITS = ("train", "validation", "test")
N = 40  # Examples per task: enough for every split to get some.


def epistemic_examples() -> list[dict]:
  return [
    {
      "input": f"Premise: Ann{i} sees that a cat sleeps. Hypothesis: a cat sleeps {i} times.",
      "target_scores": {"entailment": i % 2, "non-entailment": 1 - i % 2},
    }
    for i in range(N)
  ]


VITAMINC_LABELS = ("True", "False", "Neither")


def vitaminc_examples() -> list[dict]:
  # Twenty made-up towns, two passages each: the title decides the split.
  return [
    {
      "input": f"Town {i // 2}: It had {i} bakeries .\nClaim: It had over {i % 3} bakeries .",
      "target_scores": {label: int(label == VITAMINC_LABELS[i % 3]) for label in VITAMINC_LABELS},
    }
    for i in range(N)
  ]


def social_examples() -> list[dict]:
  examples = []
  for i in range(N):
    choices = ["Say thanks", f"Keep {i}", "Run"]
    examples.append(
      {
        "input": f"Kim lent {i} pens to Lee. What will Lee want to do next? ",
        "target_scores": {c: int(j == i % 3) for j, c in enumerate(choices)},
      }
    )
  return examples


# Defects (of the kind the real social_iqa has) appended after the N good examples.
TWO_ANSWERS = {"input": "Bo sang. How would Bo feel? ", "target_scores": {"Glad": 1, "Sad": 0}}
REPEAT = {"input": "Al ate. Why? ", "target_scores": {"Hungry": 1, "Bored": 0, "Tired": 0}}
CONTRADICTED = {"input": "Jo ran. Why? ", "target_scores": {"Late": 1, "Cold": 0, "Fun": 0}}
CONTRADICTING = {"input": "Jo ran. Why? ", "target_scores": {"Late": 0, "Cold": 1, "Fun": 0}}
SOCIAL_DEFECTS = [TWO_ANSWERS, REPEAT, REPEAT, CONTRADICTED, CONTRADICTING]


def fake_tasks() -> dict[str, list[dict]]:
  return {
    "epistemic_reasoning": epistemic_examples(),
    "vitaminc_fact_verification": vitaminc_examples(),
    "social_iqa": social_examples() + SOCIAL_DEFECTS,
    "gem_xsum": xsum_examples(N),
  }


def decode(value):
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if hasattr(value, "tolist"):
    return decode(value.tolist())
  if isinstance(value, list):
    return [decode(v) for v in value]
  return value


def read_splits(builder) -> dict[str, list[dict]]:
  out = {}
  for split in SPLITS:
    source = builder.as_data_source(split=split)
    out[split] = [{k: decode(v) for k, v in source[i].items()} for i in range(len(source))]
  return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """A TFDS data dir with the fake archive in its default manual dir, downloads/manual."""
  data_dir = tmp_path_factory.mktemp("tfds")
  write_archive(data_dir / "downloads" / "manual" / bigbench.ARCHIVE, fake_tasks())
  return data_dir


@pytest.fixture(scope="module")
def built(data_dir) -> dict[str, tuple[tfds.core.DatasetBuilder, dict[str, list[dict]]]]:
  """Each task: (its builder, its split examples, decoded)."""
  out = {}
  for task in fake_tasks():
    builder = tfds.builder(f"bigbench/{task}", data_dir=str(data_dir))
    builder.download_and_prepare()
    out[task] = builder, read_splits(builder)
  return out


def test_entailment_prompts_become_premise_hypothesis_and_label(built):
  builder, splits = built["epistemic_reasoning"]
  assert builder.info.features["label"].names == ["entailment", "non-entailment"]
  examples = [e for split in SPLITS for e in splits[split]]
  expected = {
    (f"Ann{i} sees that a cat sleeps.", f"a cat sleeps {i} times.", 1 - i % 2) for i in range(N)
  }
  assert len(examples) == N
  assert {(e["premise"], e["hypothesis"], e["label"]) for e in examples} == expected


def test_vitaminc_keeps_the_title_in_the_premise_and_splits_by_title(built):
  builder, splits = built["vitaminc_fact_verification"]
  assert builder.info.features["label"].names == list(VITAMINC_LABELS)
  got = {}
  for split in SPLITS:
    for e in splits[split]:
      got[e["premise"], e["hypothesis"]] = (VITAMINC_LABELS[e["label"]], split)
  for i in range(N):
    title = f"Town {i // 2}"
    premise, claim = f"{title}: It had {i} bakeries .", f"It had over {i % 3} bakeries ."
    assert got[premise, claim] == (VITAMINC_LABELS[i % 3], bigbench.Bigbench.split_of(title))
  assert len(got) == N


def test_multiple_choice_keeps_the_file_order_and_drops_the_defects(built):
  builder, splits = built["social_iqa"]
  examples = [e for split in SPLITS for e in splits[split]]
  expected = collections.Counter()
  for e in social_examples() + [REPEAT, REPEAT]:
    choices = list(e["target_scores"])
    right = choices.index(next(c for c, s in e["target_scores"].items() if s == 1))
    expected[e["input"].strip(), tuple(choices), right] += 1
  got = collections.Counter((e["context"], tuple(e["choices"]), e["label"]) for e in examples)
  assert got == expected  # The repeat kept twice; 2 answers and contradicted questions gone.
  assert sorted(builder.info.features.keys()) == ["choices", "context", "label"]


def test_summaries_keep_the_article_lines_and_the_one_summary(built):
  builder, splits = built["gem_xsum"]
  assert sorted(builder.info.features.keys()) == ["article", "summary"]
  assert builder.info.supervised_keys == ("article", "summary")
  got = {(e["article"], e["summary"]) for split in SPLITS for e in splits[split]}
  expected = {(xsum_article(i), xsum_summary(i)) for i in range(N)}
  assert got == expected  # the trailing newline stripped, nothing stripped in front


def test_splits_add_up_and_follow_the_input_hash(built):
  for task, (builder, _) in built.items():
    sizes = {split: builder.info.splits[split].num_examples for split in SPLITS}
    assert all(sizes.values()), (task, sizes)
    usable = N + 2 if task == "social_iqa" else N
    assert sum(sizes.values()) == usable
  _, splits = built["epistemic_reasoning"]
  for split in SPLITS:
    for e in splits[split]:
      prompt = f"Premise: {e['premise']} Hypothesis: {e['hypothesis']}"
      assert bigbench.Bigbench.split_of(prompt) == split
  _, splits = built["gem_xsum"]
  inputs = {e["input"].strip(): e["input"] for e in xsum_examples(N)}
  for split in SPLITS:
    for e in splits[split]:
      assert bigbench.Bigbench.split_of(inputs[e["article"]]) == split  # the unstripped input


@pytest.mark.parametrize("task", ["social_iqa", "gem_xsum"])
def test_a_missing_archive_is_one_line_with_the_path_and_the_download_command(tmp_path, task):
  builder = tfds.builder(f"bigbench/{task}", data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError) as raised:
    builder.download_and_prepare()
  message = str(raised.value)
  assert "\n" not in message
  manual = tmp_path / "downloads" / "manual"
  assert str(manual / "bigbench-1.0.0.tar.gz") in message
  assert f"pip download --no-deps bigbench==1.0.0 -d {manual}" in message
  assert "'pip<24.1'" in message


def test_an_example_that_does_not_parse_is_named(tmp_path):
  examples = epistemic_examples()[:3]
  examples[2] = {
    "input": "Premise: no hypothesis here.",
    "target_scores": examples[2]["target_scores"],
  }
  write_archive(tmp_path / "manual" / bigbench.ARCHIVE, {"epistemic_reasoning": examples})
  builder = tfds.builder("bigbench/epistemic_reasoning", data_dir=str(tmp_path / "tfds"))
  config = tfds.download.DownloadConfig(manual_dir=str(tmp_path / "manual"))
  with pytest.raises(ValueError, match=r"bigbench/epistemic_reasoning example 2 does not parse"):
    builder.download_and_prepare(download_config=config)


@pytest.mark.parametrize(
  "example, problem",
  [
    ({"input": "Premise: a. Hypothesis: b. Hypothesis: c.", "target_scores": {}}, "not 'Premise"),
    (
      {"input": "Premise: a. Hypothesis: b.", "target_scores": {"yes": 1, "no": 0}},
      "the answers are",
    ),
    (
      {
        "input": "Premise: a. Hypothesis: b.",
        "target_scores": {"entailment": 1, "non-entailment": 1},
      },
      "not one 1",
    ),
  ],
)
def test_parse_entailment_is_strict(example, problem):
  with pytest.raises(ValueError, match=problem):
    bigbench.parse_entailment("epistemic_reasoning", example)


def test_a_vitaminc_passage_without_a_title_does_not_parse():
  example = {
    "input": "No title here.\nClaim: x .",
    "target_scores": {"True": 1, "False": 0, "Neither": 0},
  }
  with pytest.raises(ValueError, match=r"example 0 does not parse \(the passage does not start"):
    bigbench.parse_task("vitaminc_fact_verification", [example])


def test_an_archive_without_the_task_says_so(tmp_path):
  write_archive(tmp_path / bigbench.ARCHIVE, {"social_iqa": social_examples()})
  with pytest.raises(
    ValueError, match=r"has no bigbench-1\.0\.0/.*/epistemic_reasoning/task\.json"
  ):
    bigbench.read_task(tmp_path / bigbench.ARCHIVE, "epistemic_reasoning")


@pytest.mark.parametrize(
  "example, problem",
  [
    ({"input": "An article.", "target": ["One.", "Two."]}, "not one article and one summary"),
    ({"input": "An article.", "target": "  "}, "the input or the target is empty"),
    ({"input": "An article."}, "'target'"),
  ],
)
def test_a_summary_example_that_does_not_parse_is_named(example, problem):
  with pytest.raises(
    ValueError, match=rf"bigbench/gem_xsum example 1 does not parse \(.*{problem}"
  ):
    bigbench.parse_task("gem_xsum", [xsum_examples(N)[0], example])


def test_an_archive_without_gem_xsum_names_its_path(tmp_path):
  write_archive(tmp_path / bigbench.ARCHIVE, {"social_iqa": social_examples()})
  with pytest.raises(
    ValueError, match=r"has no bigbench-1\.0\.0/bigbench/benchmark_tasks/gem/xsum/"
  ):
    bigbench.read_task(tmp_path / bigbench.ARCHIVE, "gem_xsum")
