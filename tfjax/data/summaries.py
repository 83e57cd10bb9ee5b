"""(prompt, response) text pairs of the summarisation datasets, split by split, as Python lists:
what a prompt->response task trains on and what the text baselines score.

  wiki_vital_articles  the lead extract -> its short description ("Capital city of ...");
                       articles without a description are left out and counted
  bigbench/gem_xsum    the BBC article -> its one-sentence summary (the archive goes in TFDS's
                       manual dir: a missing one is an error giving the download command)

Each dataset is prepared once as array_record (`pipeline.prepared_builder`) and read with
`tfds.data_source`, without TensorFlow.
"""

import ml_collections

from tfjax.data import pipeline
from tfjax.data.text_pairs import TextPairs
from tfjax.data.text_pairs import read_pairs as read_text_pairs

# dataset -> (prompt feature, response feature)
FIELDS = {
  "wiki_vital_articles": ("extract", "description"),
  "bigbench/gem_xsum": ("article", "summary"),
}


def prepared(name: str, data_dir: str | None = None) -> pipeline.PreparedDataset:
  """The dataset `name` (one of FIELDS), prepared in `data_dir` (the TFDS default when None)
  unless it is already."""
  if name not in FIELDS:
    raise ValueError(f"no summarisation pairs for dataset '{name}'; choose one of {list(FIELDS)}")
  config = ml_collections.ConfigDict({"name": name, "tfds_data_dir": data_dir or ""})
  prompt_field, response_field = FIELDS[name]
  return pipeline.prepare_dataset(config, {"prompt": prompt_field, "response": response_field})


def read_pairs(name: str, split: str, data_dir: str | None = None) -> TextPairs:
  """The (prompt, response) pairs of `split` ("train", "test[:10]") of the dataset `name` (one
  of FIELDS), prepared in `data_dir` (the TFDS default when None) unless it is already."""
  return _pairs_of(prepared(name, data_dir), split)


def read_splits(name: str, data_dir: str | None = None) -> dict[str, TextPairs]:
  """`read_pairs` of each split of the dataset: train, validation, test."""
  dataset = prepared(name, data_dir)
  return {split: _pairs_of(dataset, split) for split in dataset.builder.info.splits}


def _pairs_of(dataset: pipeline.PreparedDataset, split: str) -> TextPairs:
  return read_text_pairs(dataset, split, *FIELDS[dataset.name])
