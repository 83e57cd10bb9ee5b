"""Logical axis names of parameters, by name: tables, data not code paths.

A parameter's logical axes say what each dimension *is* (vocab, embed, heads, mlp ...);
`tfjax.training.sharding` maps them onto mesh axes with a rule table from the config, as in
Flax's `nn.logical_axis_rules` and MaxText. Layers stacked by `nn.scan` (under `layers/`) get a
leading "layers" axis. `PARAM_AXES` names the parameters of the building blocks here; each model
adds the rows of its own parameters (e.g. `tfjax.models.bert.PARAM_AXES`).
"""

import functools
import re
from typing import Any

import jax

from tfjax.nn.stack import STACKED_LAYERS

# (pattern matched at the end of the "/"-joined parameter path, logical axes); first match wins.
ParamAxes = tuple[tuple[str, tuple[str, ...]], ...]
PARAM_AXES: ParamAxes = (
  (r"token_embed/embedding", ("vocab", "embed")),
  (r"position_embed/embedding", ("position", "embed")),
  (r"(qkv|query|key_value)/kernel", ("embed", "heads")),
  (r"(qkv|query|key_value)/bias", ("heads",)),
  (r"out/kernel", ("heads", "embed")),
  (r"hidden/kernel", ("embed", "mlp")),
  (r"hidden/bias", ("mlp",)),
  (r"output/kernel", ("mlp", "embed")),
  (r"(out|output)/bias", ("embed",)),
  (r"\w*_norm/(scale|bias)", ("embed",)),  # every LayerNorm: <sublayer>_norm, final_norm
  # LoRA adapters (tfjax.nn.lora): sharded as their kernel along its axes; no rule maps "lora"
  # (the rank), so that axis stays replicated.
  (r"(qkv|query|key_value|hidden)/lora_a", ("embed", "lora")),
  (r"out/lora_a", ("heads", "lora")),
  (r"output/lora_a", ("mlp", "lora")),
  (r"(qkv|query|key_value)/lora_b", ("lora", "heads")),
  (r"hidden/lora_b", ("lora", "mlp")),
  (r"(out|output)/lora_b", ("lora", "embed")),
)


@functools.cache
def _patterns(param_axes: ParamAxes) -> list[tuple[re.Pattern, tuple[str, ...]]]:
  return [(re.compile(f"(^|/){pattern}$"), axes) for pattern, axes in param_axes]


def path_str(key_path: tuple) -> str:
  """'layer_0/mlp/hidden/kernel' from a jax key path."""
  names = (getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in key_path)
  return "/".join(str(name) for name in names)


def logical_axes(path: str, ndim: int, param_axes: ParamAxes = PARAM_AXES) -> tuple[str, ...]:
  """The logical axes of the parameter at `path` by the first row of `param_axes` (pattern matched
  at the end of the path, axes) that matches; a ValueError names an unknown parameter."""
  for pattern, axes in _patterns(param_axes):
    if pattern.search(path):
      if f"{STACKED_LAYERS}/" in f"{path}/" and ndim == len(axes) + 1:
        axes = (STACKED_LAYERS, *axes)
      if len(axes) != ndim:
        raise ValueError(f"parameter {path} has {ndim} dims but its logical axes are {axes}")
      return axes
  raise ValueError(
    f"parameter {path} has no logical axes; add a row for it to the PARAM_AXES of its model "
    "(or of tfjax/nn/partitioning.py for a building block)"
  )


def params_logical_axes(params: Any, param_axes: ParamAxes = PARAM_AXES) -> Any:
  """The tree of logical axes of a parameter tree (arrays or ShapeDtypeStructs)."""
  return jax.tree.map_with_path(
    lambda p, x: logical_axes(path_str(p), len(x.shape), param_axes), params
  )
