"""Tests of the cache helpers: keyed names and atomic writes."""

import hashlib
import json
import os

import numpy as np
import pytest

from tfjax.data import cache


def test_digest_is_the_sha256_of_the_sorted_json_key():
  key = {"split": "train", "version": 1, "dataset": "wiki/1.0.0"}
  expected = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
  assert cache.digest(key) == expected[:16]
  assert cache.digest(dict(reversed(key.items())), 12) == expected[:12]
  assert cache.digest({**key, "version": 2}) != cache.digest(key)


def test_cache_path_makes_the_stem_a_safe_file_name():
  path = cache.cache_path("/c/tokens", "glue/sst2:1.0.0-train[:10%]-text", {"v": 1}, ".npy")
  assert path.parent.as_posix() == "/c/tokens"
  assert path.name == f"glue_sst2_1.0.0-train_10_-text-{cache.digest({'v': 1})}.npy"


def test_write_atomically_writes_a_readable_file_and_replaces_an_old_one(tmp_path):
  path = tmp_path / "deep" / "tokens.npy"
  cache.write_atomically(path, lambda f: np.save(f, np.arange(5)))
  np.testing.assert_array_equal(np.load(path), np.arange(5))
  assert os.stat(path).st_mode & 0o777 == 0o644  # a shared cache stays readable by others
  cache.write_atomically(path, lambda f: np.save(f, np.arange(3)))
  np.testing.assert_array_equal(np.load(path), np.arange(3))
  assert os.listdir(path.parent) == ["tokens.npy"]


def test_a_failed_write_leaves_neither_a_file_nor_a_temporary(tmp_path):
  def fail(f):
    f.write(b"half")
    raise RuntimeError("disk full")

  with pytest.raises(RuntimeError, match="disk full"):
    cache.write_atomically(tmp_path / "x.bin", fail)
  assert os.listdir(tmp_path) == []
