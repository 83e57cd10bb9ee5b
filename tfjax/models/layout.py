"""Conversion between the unscanned and scanned layouts of a model's layer parameters.

Unscanned (`scan_layers=False`): one subtree per layer, `layer_0`, ..., `layer_{n-1}`, all with
the same structure. Scanned (`scan_layers=True`, `nn.scan` over layers): one subtree `layers`
of that structure whose leaves have a leading [n] axis, leaf `i` of that axis being `layer_{i}`.

Both functions are pure and rewrite every dict of the tree that holds layer keys, wherever it
sits: a `params` collection, a `{"params": ...}` variables dict, a KV cache, or an optimizer
state whose moments mirror the parameters (optax's Adam `mu` and `nu` inside its NamedTuples).
Everything else (step counts, other parameters) is returned unchanged. Leaves may be jax or
numpy arrays, or `jax.ShapeDtypeStruct`s (abstract targets, e.g. for an Orbax restore; their
sharding is dropped, since one layer's sharding does not say how the stack is sharded).
"""

import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tfjax.nn.stack import STACKED_LAYERS as SCANNED_KEY

_LAYER_KEY = re.compile(r"layer_(\d+)$")


def _has_layer_keys(node: Any) -> bool:
  return isinstance(node, Mapping) and any(_LAYER_KEY.match(str(k)) for k in node)


def _has_scanned_key(node: Any) -> bool:
  return isinstance(node, Mapping) and SCANNED_KEY in node


def _stack(*leaves: Any) -> Any:
  first = leaves[0]
  if isinstance(first, jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct((len(leaves), *first.shape), first.dtype)
  if all(isinstance(leaf, np.ndarray | np.generic) for leaf in leaves):
    return np.stack(leaves)
  return jnp.stack(leaves)


def _slice(leaf: Any, i: int) -> Any:
  if isinstance(leaf, jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype)
  return leaf[i]


def stack_layers(tree: Any, num_layers: int) -> Any:
  """The scanned layout of `tree`: in each dict with keys `layer_0` ... `layer_{n-1}`, those
  subtrees are replaced by one subtree `layers` whose leaves stack them on a new leading axis.

  Raises a ValueError when a dict's layer keys are not exactly `layer_0` ... `layer_{n-1}`
  (n = `num_layers`), when it already has a `layers` key, or when the layers differ in
  structure or leaf shape.
  """
  if num_layers < 1:
    raise ValueError(f"num_layers={num_layers} must be >= 1")

  def convert(node: Any) -> Any:
    if not _has_layer_keys(node):
      return node
    found = sorted(int(_LAYER_KEY.match(str(k)).group(1)) for k in node if _LAYER_KEY.match(str(k)))
    if found != list(range(num_layers)):
      raise ValueError(
        f"expected layer keys layer_0 ... layer_{num_layers - 1} (num_layers={num_layers}), "
        f"found {[f'layer_{i}' for i in found]}; pass the num_layers of the model these "
        "parameters belong to"
      )
    if SCANNED_KEY in node:
      raise ValueError(f"the tree holds both {SCANNED_KEY!r} and layer_i keys: not one layout")
    layers = [node[f"layer_{i}"] for i in range(num_layers)]
    structure = jax.tree.structure(layers[0])
    for i, layer in enumerate(layers[1:], 1):
      if jax.tree.structure(layer) != structure:
        raise ValueError(f"layer_{i} has another structure than layer_0; cannot stack them")
      shapes = [np.shape(leaf) for leaf in jax.tree.leaves(layer)]
      if shapes != [np.shape(leaf) for leaf in jax.tree.leaves(layers[0])]:
        raise ValueError(f"layer_{i} has other leaf shapes than layer_0; cannot stack them")
    rest = {k: v for k, v in node.items() if not _LAYER_KEY.match(str(k))}
    return {**rest, SCANNED_KEY: jax.tree.map(_stack, *layers)}

  return jax.tree.map(convert, tree, is_leaf=_has_layer_keys)


def unstack_layers(tree: Any) -> Any:
  """The unscanned layout of `tree`: in each dict with a `layers` key, that subtree is replaced
  by `layer_0` ... `layer_{n-1}`, slices of its leaves' leading axis (n = that axis' size).

  Raises a ValueError when the leaves under `layers` disagree on the size of the leading axis
  or when the dict also has `layer_i` keys.
  """

  def convert(node: Any) -> Any:
    if not _has_scanned_key(node):
      return node
    if _has_layer_keys(node):
      raise ValueError(f"the tree holds both {SCANNED_KEY!r} and layer_i keys: not one layout")
    stacked = node[SCANNED_KEY]
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree.leaves(stacked)}
    if len(sizes) != 1 or None in sizes:
      raise ValueError(
        f"the leaves under {SCANNED_KEY!r} must share one leading (layer) axis; their leading "
        f"sizes are {sorted(sizes, key=str)}"
      )
    (num_layers,) = sizes
    rest = {k: v for k, v in node.items() if k != SCANNED_KEY}
    layers = {
      f"layer_{i}": jax.tree.map(lambda leaf, i=i: _slice(leaf, i), stacked)
      for i in range(num_layers)
    }
    return {**rest, **layers}

  return jax.tree.map(convert, tree, is_leaf=_has_scanned_key)
