"""Shared fixtures: the real wiki_vital_articles corpus and Fashion-MNIST, built once per test
session."""

import json
import pathlib

import pytest
import tensorflow_datasets as tfds

from tfjax.data.datasets import wiki_vital_articles


@pytest.fixture(scope="session")
def wiki_data_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
  """A TFDS data dir holding the real corpus (built once; about a second)."""
  data_dir = tmp_path_factory.mktemp("tfds")
  tfds.builder("wiki_vital_articles", data_dir=str(data_dir)).download_and_prepare()
  return data_dir


@pytest.fixture(scope="session")
def wiki_builder(wiki_data_dir: pathlib.Path) -> tfds.core.DatasetBuilder:
  return tfds.builder("wiki_vital_articles", data_dir=str(wiki_data_dir))


@pytest.fixture(scope="session")
def source_articles() -> dict[str, dict[str, str]]:
  """The package's JSON, read directly: the reference the built dataset is checked against."""
  with wiki_vital_articles.source_path().open(encoding="utf-8") as f:
    return json.load(f)


@pytest.fixture(scope="session")
def split_texts(wiki_builder: tfds.core.DatasetBuilder) -> dict[str, list[str]]:
  """The extracts of each split, in data-source order, decoded."""
  sources = wiki_builder.as_data_source()
  return {
    split: [source[i]["extract"].decode("utf-8") for i in range(len(source))]
    for split, source in sources.items()
  }


@pytest.fixture(scope="session")
def fashion_mnist_data_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
  """A TFDS data dir holding the real fashion_mnist_offline, from the installed files or the .deb
  that apt-get downloads (about 1 s here, 4 s to prepare); the test is skipped where neither
  can be had."""
  data_dir = tmp_path_factory.mktemp("tfds_fashion")
  try:
    tfds.builder("fashion_mnist_offline", data_dir=str(data_dir)).download_and_prepare()
  except FileNotFoundError as e:
    pytest.skip(f"the Fashion-MNIST files cannot be had here: {e}")
  return data_dir
