"""HF checkpoint directories: config.json and safetensors (one file or shards), read and written."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tfjax.hub import files

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "gpt2_tiny"
WEIGHTS = files.WEIGHTS_FILE


def sharded_copy(tmp_path: Path, weight_map_extra: dict[str, str] | None = None) -> Path:
  """The golden directory with its tensors split over two shards and an index."""
  out = tmp_path / "sharded"
  shutil.copytree(GOLDEN, out)
  (out / WEIGHTS).unlink()
  tensors = load_file(GOLDEN / WEIGHTS)
  names = sorted(tensors)
  shards = {
    "model-00001-of-00002.safetensors": names[::2],
    "model-00002-of-00002.safetensors": names[1::2],
  }
  weight_map = {}
  for shard, shard_names in shards.items():
    save_file({n: tensors[n] for n in shard_names}, str(out / shard), metadata={"format": "pt"})
    weight_map.update(dict.fromkeys(shard_names, shard))
  weight_map.update(weight_map_extra or {})
  index = {"metadata": {}, "weight_map": weight_map}
  (out / files.WEIGHTS_INDEX_FILE).write_text(json.dumps(index))
  return out


def test_sharded_checkpoint_reads_like_a_single_file(tmp_path):
  tensors = files.read_safetensors(sharded_copy(tmp_path))
  original = load_file(GOLDEN / WEIGHTS)
  assert set(tensors) == set(original)
  for name, array in original.items():
    np.testing.assert_array_equal(tensors[name], array, err_msg=name)


def test_index_naming_a_tensor_no_shard_holds_is_an_error(tmp_path):
  out = sharded_copy(tmp_path, {"extra.weight": "model-00001-of-00002.safetensors"})
  with pytest.raises(ValueError, match=r"no shard holds: \['extra.weight'\]"):
    files.read_safetensors(out)


@pytest.mark.parametrize(
  ("missing", "read"), [("config.json", files.read_config), (WEIGHTS, files.read_safetensors)]
)
def test_missing_file_names_it_and_the_expected_contents(tmp_path, missing, read):
  out = tmp_path / "gpt2"
  shutil.copytree(GOLDEN, out)
  (out / missing).unlink()
  with pytest.raises(FileNotFoundError, match=missing) as error:
    read(out)
  assert "config.json and model.safetensors" in str(error.value)


def test_pickled_weights_are_refused_with_a_conversion_hint(tmp_path):
  out = tmp_path / "gpt2"
  shutil.copytree(GOLDEN, out)
  (out / WEIGHTS).unlink()
  (out / "pytorch_model.bin").write_bytes(b"not read")
  with pytest.raises(FileNotFoundError, match="never loads"):
    files.read_safetensors(out)


def test_written_checkpoint_reads_back(tmp_path):
  hf_config = {"model_type": "gpt2", "n_layer": 1}
  tensors = {"wte.weight": np.arange(6, dtype=np.float32).reshape(2, 3)}
  files.write_checkpoint(tmp_path / "new", hf_config, tensors)
  assert files.read_config(tmp_path / "new") == hf_config
  written = files.read_safetensors(tmp_path / "new")
  np.testing.assert_array_equal(written["wte.weight"], tensors["wte.weight"])
