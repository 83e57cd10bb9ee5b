"""The one layer stack of every model: num_layers layers, unrolled or under `nn.scan`, each with
the configured activation rematerialisation and, between layers, a sharding constraint.

`apply_layers` is called inside a model's compact method, so the layers are that model's own
submodules: `layer_0` ... `layer_{n-1}` unrolled, or (`scan=True`) one submodule `layers` whose
parameters (and key/value cache, and sown intermediates) have a leading [num_layers] axis —
XLA then compiles one layer, not num_layers copies.
"""

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax

Array = jax.Array

STACKED_LAYERS = "layers"  # the nn.scan submodule; its leaves have a leading layer axis

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
  names = sorted(
    (k for k in tree if re.fullmatch(r"layer_\d+", k)), key=lambda k: int(k.split("_")[1])
  )
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
