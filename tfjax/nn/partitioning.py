"""Logical axis names of every parameter of tfjax.nn, by name: one table, data not code paths.

A parameter's logical axes say what each dimension *is* (vocab, embed, heads, mlp ...);
`tfjax.training.sharding` maps them onto mesh axes with a rule table from the config, as in
Flax's `nn.logical_axis_rules` and MaxText. Layers stacked by `nn.scan` (under `layers/`) get a
leading "layers" axis.
"""

import re
from typing import Any

import jax

from tfjax.nn.stack import STACKED_LAYERS

# (pattern matched at the end of the "/"-joined parameter path, logical axes); first match wins.
PARAM_AXES: tuple[tuple[str, tuple[str, ...]], ...] = (
  (r"token_embed/embedding", ("vocab", "embed")),
  (r"position_embed/embedding", ("position", "embed")),
  (r"(qkv|query|key_value)/kernel", ("embed", "heads")),
  (r"(qkv|query|key_value)/bias", ("heads",)),
  (r"out/kernel", ("heads", "embed")),
  (r"hidden/kernel", ("embed", "mlp")),
  (r"hidden/bias", ("mlp",)),
  (r"output/kernel", ("mlp", "embed")),
  (r"(out|output)/bias", ("embed",)),
  (r"lm_head/kernel", ("embed", "vocab")),
  # BERT (tfjax.models.bert): the type table is tiny and, like the task heads' class axis,
  # named by an axis no sharding rule maps, so it stays replicated.
  (r"segment_embed/embedding", ("segment", "embed")),
  (r"(pooler|mlm_transform)/kernel", ("embed", "embed")),  # mesh_spec shards one of the two
  (r"(pooler|mlm_transform)/bias", ("embed",)),
  (r"mlm_output_bias", ("vocab",)),
  (r"(nsp|classifier|qa_outputs)/kernel", ("embed", "classes")),
  (r"(nsp|classifier|qa_outputs)/bias", ("classes",)),
  (r"\w*_norm/(scale|bias)", ("embed",)),  # every LayerNorm: <sublayer>_norm, final_norm
)
_PATTERNS = [(re.compile(f"(^|/){pattern}$"), axes) for pattern, axes in PARAM_AXES]


def path_str(key_path: tuple) -> str:
  """'layer_0/mlp/hidden/kernel' from a jax key path."""
  names = (getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in key_path)
  return "/".join(str(name) for name in names)


def logical_axes(path: str, ndim: int) -> tuple[str | None, ...]:
  """The logical axes of the parameter at `path`; a ValueError names an unknown parameter."""
  for pattern, axes in _PATTERNS:
    if pattern.search(path):
      if f"{STACKED_LAYERS}/" in f"{path}/" and ndim == len(axes) + 1:
        axes = (STACKED_LAYERS, *axes)
      if len(axes) != ndim:
        raise ValueError(f"parameter {path} has {ndim} dims but its logical axes are {axes}")
      return axes
  raise ValueError(
    f"parameter {path} has no logical axes; add its name to PARAM_AXES in tfjax/nn/partitioning.py"
  )


def params_logical_axes(params: Any) -> Any:
  """The tree of logical axes of a parameter tree (arrays or ShapeDtypeStructs)."""
  return jax.tree.map_with_path(lambda p, x: logical_axes(path_str(p), len(x.shape)), params)
