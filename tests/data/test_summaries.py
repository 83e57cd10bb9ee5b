"""The summarisation pairs: the real wiki_vital_articles against its package's JSON, and
bigbench/gem_xsum on the fake archive (fake_bigbench.py)."""

import collections

import pytest

from tests.data.datasets.fake_bigbench import write_archive, xsum_article, xsum_examples
from tfjax.data import summaries
from tfjax.data.datasets import bigbench
from tfjax.data.datasets.builder import hash_split


def test_wiki_pairs_are_extract_and_description_and_count_the_empty_ones(
  wiki_data_dir, source_articles
):
  pairs = summaries.read_splits("wiki_vital_articles", str(wiki_data_dir))
  assert list(pairs) == ["train", "validation", "test"]
  # The reference: the JSON, split by the title's hash at 90/5/5 (the builder's rule).
  expected, empty = collections.defaultdict(set), collections.Counter()
  for a in source_articles.values():
    split = hash_split(a["title"], 900, 950)
    if (a.get("description") or "").strip():
      expected[split].add((a["extract"].strip(), a["description"].strip()))
    else:
      empty[split] += 1
  for split, got in pairs.items():
    assert len(got.prompts) == len(got.responses) == len(got)
    assert set(zip(got.prompts, got.responses, strict=True)) == expected[split]
    assert got.dropped == empty[split] > 0
  assert sum(len(p) + p.dropped for p in pairs.values()) == len(source_articles) == 10_033


def test_xsum_pairs_are_article_and_summary_in_their_split(tmp_path):
  write_archive(
    tmp_path / "downloads" / "manual" / bigbench.ARCHIVE, {"gem_xsum": xsum_examples(30)}
  )
  pairs = summaries.read_splits("bigbench/gem_xsum", str(tmp_path))
  by_article = {e["input"].strip(): e for e in xsum_examples(30)}
  assert sum(len(p) for p in pairs.values()) == 30
  for split, got in pairs.items():
    assert got.dropped == 0
    for prompt, response in zip(got.prompts, got.responses, strict=True):
      example = by_article[prompt]
      assert response == example["target"]
      assert bigbench.Bigbench.split_of(example["input"]) == split
  assert by_article[xsum_article(0)]["input"].endswith("\n")  # stripped, its lines kept
  first = summaries.read_pairs("bigbench/gem_xsum", "train[:2]", str(tmp_path))
  assert first.prompts == pairs["train"].prompts[:2]


def test_a_missing_archive_gives_the_download_command(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"pip download --no-deps bigbench==1\.0\.0 -d "):
    summaries.read_pairs("bigbench/gem_xsum", "test", str(tmp_path))


def test_an_unknown_dataset_names_the_known_ones():
  with pytest.raises(
    ValueError, match=r"choose one of \['wiki_vital_articles', 'bigbench/gem_xsum'\]"
  ):
    summaries.read_pairs("squad", "train")
