"""HF checkpoint directories: `config.json` + `model.safetensors` (or an index and its shards).

Tensors are read with `safetensors.numpy` only: a `pytorch_model.bin` is a pickle, which can run
code when loaded, so tfjax never reads one and says how to convert it instead.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
_DIR_CONTENTS = (
  f"an HF checkpoint directory holds {CONFIG_FILE} and {WEIGHTS_FILE} (or "
  f"{WEIGHTS_INDEX_FILE} and the shards it lists), as written by transformers' "
  "save_pretrained(..., safe_serialization=True)"
)


def require_file(path: Path) -> Path:
  """`path`, or a FileNotFoundError that says what an HF checkpoint directory holds (and, for
  weights saved as PyTorch pickles, how to convert them)."""
  if not path.is_file():
    pickles = sorted(p.name for p in path.parent.glob("pytorch_model*.bin"))
    if path.name.endswith(".safetensors") and pickles:
      raise FileNotFoundError(
        f"{path.parent} holds {pickles[0]}, a pickle, which tfjax never loads (unpickling can "
        f"run code), and no {path.name}; convert it to safetensors with transformers: "
        "from_pretrained(dir) then save_pretrained(dir, safe_serialization=True)"
      )
    raise FileNotFoundError(f"{path} not found: {_DIR_CONTENTS}")
  return path


def read_config(model_dir: str | Path) -> dict[str, Any]:
  """The `config.json` of an HF checkpoint directory, as a dict."""
  return json.loads(require_file(Path(model_dir) / CONFIG_FILE).read_text())


def read_safetensors(model_dir: str | Path) -> dict[str, np.ndarray]:
  """All tensors of `model.safetensors`, or of the shards `model.safetensors.index.json` lists."""
  model_dir = Path(model_dir)
  single = model_dir / WEIGHTS_FILE
  if single.is_file() or not (model_dir / WEIGHTS_INDEX_FILE).is_file():
    return load_file(require_file(single))
  weight_map = json.loads((model_dir / WEIGHTS_INDEX_FILE).read_text())["weight_map"]
  tensors = {}
  for shard in sorted(set(weight_map.values())):
    tensors.update(load_file(require_file(model_dir / shard)))
  missing = sorted(set(weight_map) - set(tensors))
  if missing:
    raise ValueError(f"{WEIGHTS_INDEX_FILE} lists tensors that no shard holds: {missing}")
  return tensors


def write_checkpoint(
  model_dir: str | Path, hf_config: dict[str, Any], tensors: dict[str, np.ndarray]
) -> None:
  """Writes `config.json` + a single `model.safetensors` (PyTorch metadata, as transformers
  writes them), creating `model_dir` if needed."""
  model_dir = Path(model_dir)
  model_dir.mkdir(parents=True, exist_ok=True)
  (model_dir / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
  save_file(tensors, str(model_dir / WEIGHTS_FILE), metadata={"format": "pt"})
