"""The one layer stack of every model: num_layers layers, unrolled or under `nn.scan`, each with
the configured activation rematerialisation and, between layers, a sharding constraint.

`apply_layers` is called inside a model's compact method, so the layers are that model's own
submodules: `layer_0` ... `layer_{n-1}` unrolled, or (`scan=True`) one submodule `layers` whose
parameters (and key/value cache, and sown intermediates) have a leading [num_layers] axis —
XLA then compiles one layer, not num_layers copies.

`stack_layers` / `unstack_layers` convert parameter trees between the two layouts.
"""

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

STACKED_LAYERS = "layers"  # the nn.scan submodule; its leaves have a leading layer axis
_LAYER_KEY = re.compile(r"layer_(\d+)$")  # an unrolled layer

# Activation rematerialisation of each layer (`model.remat_policy`): which intermediate values of
# the forward pass are kept for the backward pass; the others are recomputed (Chen et al. 2016).
# None: no rematerialisation at all, every intermediate is kept. Measured on XLA:CPU (jax 0.10):
# remat lowers peak memory only with scan_layers=True (GPT, 12 layers, d=256, batch 16x128,
# train-step temp memory: "full" 220 MiB, "none" 1171 MiB); in the unrolled loop the CPU
# scheduler runs the recomputation early and the peak does not move (1065 MiB for every policy).
REMAT_POLICIES: dict[str, Callable[..., bool] | None] = {
  "none": None,
  "full": jax.checkpoint_policies.nothing_saveable,  # keep only each layer's input
  "dots": jax.checkpoint_policies.checkpoint_dots,  # keep matmul outputs, recompute the rest
  # keep the projections' outputs, recompute attention's batched einsums (the [b,h,q,k] logits)
  "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def constrain(sharding: Any, x: Array) -> Array:
  """Pins activations `x` to `sharding` (the batch split); None: no constraint."""
  return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)


def _forward(layer: nn.Module, x: Array, inputs: Mapping[str, Any], deterministic: bool) -> Array:
  """One layer with positional arguments only, as nn.remat's static_argnums and nn.scan need."""
  return layer(x, **inputs, deterministic=deterministic)


def apply_layers(
  make_layer: Callable[[str], nn.Module],
  x: Array,
  inputs: Mapping[str, Any],
  *,
  num_layers: int,
  deterministic: bool,
  scan: bool = False,
  remat_policy: str = "none",
  activation_sharding: Any = None,
  keep_outputs: bool = False,
) -> tuple[Array, tuple[Array, ...] | None]:
  """x -> layer_{n-1}(... layer_0(x, **inputs) ...); returns (output, each layer's output when
  `keep_outputs`, else None).

  Args:
    make_layer: builds the layer module of a given name (called in the caller's scope).
    x: the stream [b, t, d] (the scan carry).
    inputs: keyword arguments every layer gets unchanged (masks, encoder output, positions).
    deterministic: dropout off; a Python bool that selects code (static under remat).
    scan: one `nn.scan` over stacked parameters instead of num_layers submodules.
    remat_policy: a key of REMAT_POLICIES.
    activation_sharding: the batch `Sharding` each layer's output is pinned to (None: none).
    keep_outputs: also return every layer's output (hidden states); under scan they are the
      scan's stacked outputs, [num_layers, b, t, d] in memory.
  """
  if remat_policy not in REMAT_POLICIES:
    raise ValueError(
      f"remat_policy={remat_policy!r} is unknown; choose one of {sorted(REMAT_POLICIES)}"
    )
  forward = _forward
  policy = REMAT_POLICIES[remat_policy]
  if policy is not None:
    # Inside a scan the loop boundary already keeps XLA from merging the recomputation away.
    forward = nn.remat(forward, policy=policy, static_argnums=(3,), prevent_cse=not scan)
  if not scan:
    outputs = []
    for i in range(num_layers):
      x = constrain(
        activation_sharding, forward(make_layer(f"layer_{i}"), x, inputs, deterministic)
      )
      outputs.append(x)
    return x, tuple(outputs) if keep_outputs else None

  def body(layer: nn.Module, carry: Array, inputs: Mapping[str, Any], deterministic: bool):
    carry = constrain(activation_sharding, forward(layer, carry, inputs, deterministic))
    return carry, carry if keep_outputs else None

  scanned = nn.scan(
    body,
    variable_axes={"params": 0, "cache": 0, "intermediates": 0},
    split_rngs={"params": True, "dropout": True},
    in_axes=(nn.broadcast, nn.broadcast),
    length=num_layers,
    metadata_params={nn.PARTITION_NAME: STACKED_LAYERS},
  )
  x, stacked = scanned(make_layer(STACKED_LAYERS), x, inputs, deterministic)
  return x, tuple(stacked[i] for i in range(num_layers)) if keep_outputs else None


def layer_values(tree: Mapping[str, Any], path: tuple[str, ...]) -> list[Array]:
  """Each layer's value at `path` of a sown collection (e.g. "intermediates" of
  ("self_attention", "attention_weights")), in layer order, from unrolled or scanned layers.

  `sow` keeps a tuple of the values sown; the first is the layer's.
  """
  names = sorted((k for k in tree if _LAYER_KEY.match(k)), key=lambda k: int(k.split("_")[1]))
  lookup = lambda node: functools.reduce(lambda d, k: d[k], path, node)[0]
  if names:
    return [lookup(tree[name]) for name in names]
  if STACKED_LAYERS in tree:
    stacked = lookup(tree[STACKED_LAYERS])  # [num_layers, ...]
    return [stacked[i] for i in range(stacked.shape[0])]
  raise ValueError(
    f"no {'/'.join(path)} in these intermediates; apply the model with "
    "mutable=['intermediates'] and pass the returned state"
  )


# ------------------------------------------------------------------ the two parameter layouts
# Conversion between the unscanned and scanned layouts of a model's layer parameters.
#
# Unscanned (`scan_layers=False`): one subtree per layer, `layer_0`, ..., `layer_{n-1}`, all with
# the same structure. Scanned (`scan_layers=True`, `nn.scan` over layers): one subtree `layers`
# of that structure whose leaves have a leading [n] axis, leaf `i` of that axis being `layer_{i}`.
#
# Both functions are pure and rewrite every dict of the tree that holds layer keys, wherever it
# sits: a `params` collection, a `{"params": ...}` variables dict, a KV cache, or an optimizer
# state whose moments mirror the parameters (optax's Adam `mu` and `nu` inside its NamedTuples).
# Everything else (step counts, other parameters) is returned unchanged. Leaves may be jax or
# numpy arrays, or `jax.ShapeDtypeStruct`s (abstract targets, e.g. for an Orbax restore; their
# sharding is dropped, since one layer's sharding does not say how the stack is sharded).


def _has_layer_keys(node: Any) -> bool:
  return isinstance(node, Mapping) and any(_LAYER_KEY.match(str(k)) for k in node)


def _has_scanned_key(node: Any) -> bool:
  return isinstance(node, Mapping) and STACKED_LAYERS in node


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
    if STACKED_LAYERS in node:
      raise ValueError(f"the tree holds both {STACKED_LAYERS!r} and layer_i keys: not one layout")
    layers = [node[f"layer_{i}"] for i in range(num_layers)]
    structure = jax.tree.structure(layers[0])
    for i, layer in enumerate(layers[1:], 1):
      if jax.tree.structure(layer) != structure:
        raise ValueError(f"layer_{i} has another structure than layer_0; cannot stack them")
      shapes = [np.shape(leaf) for leaf in jax.tree.leaves(layer)]
      if shapes != [np.shape(leaf) for leaf in jax.tree.leaves(layers[0])]:
        raise ValueError(f"layer_{i} has other leaf shapes than layer_0; cannot stack them")
    rest = {k: v for k, v in node.items() if not _LAYER_KEY.match(str(k))}
    return {**rest, STACKED_LAYERS: jax.tree.map(_stack, *layers)}

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
      raise ValueError(f"the tree holds both {STACKED_LAYERS!r} and layer_i keys: not one layout")
    stacked = node[STACKED_LAYERS]
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree.leaves(stacked)}
    if len(sizes) != 1 or None in sizes:
      raise ValueError(
        f"the leaves under {STACKED_LAYERS!r} must share one leading (layer) axis; their leading "
        f"sizes are {sorted(sizes, key=str)}"
      )
    (num_layers,) = sizes
    rest = {k: v for k, v in node.items() if k != STACKED_LAYERS}
    layers = {
      f"layer_{i}": jax.tree.map(lambda leaf, i=i: _slice(leaf, i), stacked)
      for i in range(num_layers)
    }
    return {**rest, **layers}

  return jax.tree.map(convert, tree, is_leaf=_has_scanned_key)
