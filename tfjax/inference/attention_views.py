"""What a ViT looks at: attention of the [CLS] token over the patches, and attention rollout.

A layer's raw attention says where a token reads from its *inputs at that layer*, which after
the first layer are already mixtures of all tokens through the residual stream. Attention
rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers", §3) traces the
attention back to the input patches: per layer, average the heads, add the identity for the
residual connection (0.5 A + 0.5 I), renormalise the rows, and multiply the layers' matrices,
rollout = A_L ... A_1. Dosovitskiy et al. 2020 (§4.5, Fig. 6 and Appendix D.8) draw the
[CLS] row of this rollout over the image.

Weights are those of `tfjax.models.vit.attention_weights`: a list of layers of
[b, heads, tokens, tokens] (or that list stacked, [layers, b, heads, tokens, tokens]); the
first `num_prefix_tokens` tokens are [CLS] (1, pooling "cls") or none (0, pooling "gap"), the
rest the patches in row-major order over the patch grid. A "gap" model pools the mean of all
tokens, so it has no [CLS] row: its maps are the mean over all query rows instead (the
attention each patch receives on average over the tokens, as the pooled state is their mean).

Pure functions of arrays (jax.numpy; jit them with `grid` and `num_prefix_tokens` static).
"""

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from tfjax.models.vit import ViTConfig, attention_weights

Array = jax.Array

_HIGHEST = jax.lax.Precision.HIGHEST  # rollout multiplies probabilities: no bf16 passes on TPU


def _stacked(weights: Any) -> Array:
  """The weights as one float32 array [layers, b, heads, tokens, tokens]."""
  if isinstance(weights, (list, tuple)):
    if not weights:
      raise ValueError("no attention weights (an empty list of layers); give one per layer")
    weights = jnp.stack([jnp.asarray(w) for w in weights])
  weights = jnp.asarray(weights, jnp.float32)
  if weights.ndim != 5 or weights.shape[-1] != weights.shape[-2]:
    raise ValueError(
      f"attention weights have shape {weights.shape}; give a list of layers of "
      "[b, heads, tokens, tokens] (tfjax.models.vit.attention_weights) or them stacked"
    )
  return weights


def _pooling_row(matrix: Array, num_prefix_tokens: int) -> Array:
  """[..., tokens, tokens] -> [..., tokens]: the [CLS] row, or with no [CLS] the mean row."""
  return matrix[..., 0, :] if num_prefix_tokens else matrix.mean(axis=-2)


def _to_grid(row: Array, grid: tuple[int, int], num_prefix_tokens: int) -> Array:
  """[..., tokens] -> [..., h, w]: the patch columns of a row, in row-major order."""
  h, w = grid
  if row.shape[-1] != num_prefix_tokens + h * w:
    raise ValueError(
      f"attention over {row.shape[-1]} tokens is not {num_prefix_tokens} prefix token(s) + a "
      f"{h}x{w} patch grid; pass the model's config.grid and config.num_prefix_tokens"
    )
  return row[..., num_prefix_tokens:].reshape(*row.shape[:-1], h, w)


def cls_attention(weights: Any, grid: tuple[int, int], num_prefix_tokens: int = 1) -> Array:
  """Each layer's and head's attention of [CLS] over the patches, as images of the patch grid:
  what the token that becomes the pooled state reads at that layer (Dosovitskiy et al. 2020,
  Fig. 6 draw the rollout of it). The [CLS] -> [CLS] weight is left out, so a map sums to the
  fraction of attention on the patches. With `num_prefix_tokens=0` (a "gap" model, no [CLS])
  a map is the mean over all tokens' rows."""
  weights = _stacked(weights)  # [layers, b, heads, tokens, tokens]
  rows = _pooling_row(weights, num_prefix_tokens)  # [layers, b, heads, tokens]
  return _to_grid(rows, grid, num_prefix_tokens)  # [layers, b, heads, h, w]


def attention_rollout(weights: Any, residual: bool = True) -> Array:
  """Attention rollout (Abnar & Zuidema 2020, §3): per layer the mean over heads, with the
  residual connection as 0.5 A + 0.5 I and rows renormalised, multiplied from the first layer
  to the last, A_L ... A_1. Row i is how much token i at the output draws on each input
  token; rows sum to 1. `residual=False` multiplies the head-averaged raw attention alone,
  leaving out the skip path that §3 adds the I for."""
  weights = _stacked(weights)  # [layers, b, heads, tokens, tokens]
  mixed = weights.mean(axis=2)  # [layers, b, tokens, tokens]
  if residual:
    mixed = 0.5 * mixed + 0.5 * jnp.eye(mixed.shape[-1], dtype=mixed.dtype)
  mixed = mixed / mixed.sum(axis=-1, keepdims=True)
  rollout = mixed[0]
  for layer in mixed[1:]:
    rollout = jnp.matmul(layer, rollout, precision=_HIGHEST)  # A_l (A_{l-1} ... A_1)
  return rollout  # [b, tokens, tokens]


def rollout_map(rollout: Array, grid: tuple[int, int], num_prefix_tokens: int = 1) -> Array:
  """The [CLS] row of `attention_rollout` over the patches, as an image of the patch grid: how
  much each input patch reaches the pooled state (Dosovitskiy et al. 2020, §4.5, Fig. 6).
  With `num_prefix_tokens=0` (a "gap" model, which has no [CLS] and pools the mean of all
  tokens) it is the mean over all tokens' rows, which then sums to 1 over the patches."""
  rollout = jnp.asarray(rollout, jnp.float32)  # [b, tokens, tokens]
  return _to_grid(_pooling_row(rollout, num_prefix_tokens), grid, num_prefix_tokens)  # [b, h, w]


def upsample(maps: Any, size: int | Sequence[int], method: str = "nearest") -> Array:
  """Maps on the patch grid [..., h, w] at image pixels [..., H, W], to lay over the image.
  "nearest" (the default) gives each patch's value to all its P x P pixels, which is what the
  model saw: one token per patch; "linear" or "cubic" (jax.image.resize) draw smoother maps."""
  maps = jnp.asarray(maps, jnp.float32)  # [..., h, w]
  height, width = (size, size) if isinstance(size, int) else tuple(size)
  if maps.ndim < 2:
    raise ValueError(f"maps have shape {maps.shape}; give [..., h, w] on the patch grid")
  return jax.image.resize(maps, (*maps.shape[:-2], height, width), method)  # [..., H, W]


def views(
  intermediates: Mapping[str, Any], config: ViTConfig, residual: bool = True
) -> tuple[Array, Array]:
  """(cls maps [layers, b, heads, h, w], rollout map [b, h, w]) of a ViT or ViTModel apply with
  mutable=["intermediates"]: the two inputs of `tfjax.training.plots.plot_image_attention`."""
  weights = attention_weights(intermediates)  # layers x [b, heads, tokens, tokens]
  cls_maps = cls_attention(weights, config.grid, config.num_prefix_tokens)
  rollout = attention_rollout(weights, residual=residual)  # [b, tokens, tokens]
  return cls_maps, rollout_map(rollout, config.grid, config.num_prefix_tokens)
