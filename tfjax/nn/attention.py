"""Scaled dot-product and multi-head attention (Vaswani et al. 2017, §3.2).

Axis names used throughout: b = batch, q = query positions, k = key positions, h = heads,
d = per-head size. Masks are boolean, True where a query may attend to a key, and broadcast to
[b, h, q, k].
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from tfjax.nn import lora as lora_lib

Array = jax.Array


def causal_mask(length: int) -> Array:
  """[1, 1, q, k] mask letting position i attend to positions <= i (decoder self-attention)."""
  return jnp.tril(jnp.ones((length, length), dtype=jnp.bool_))[None, None]


def padding_mask(query_valid: Array, key_valid: Array) -> Array:
  """[b, 1, q, k] mask from per-token validity flags [b, q] and [b, k] (False = padding)."""
  return query_valid[:, None, :, None] & key_valid[:, None, None, :]


def segment_mask(query_segments: Array, key_segments: Array) -> Array:
  """[b, 1, q, k] mask keeping attention inside each packed example: True where the query's and
  the key's segment ids [b, q] and [b, k] are equal (several examples laid end to end in a row)."""
  return query_segments[:, None, :, None] == key_segments[:, None, None, :]


def combine_masks(*masks: Array | None) -> Array | None:
  """Logical AND of the masks that are not None; None when all are."""
  masks = [m for m in masks if m is not None]
  if not masks:
    return None
  combined = masks[0]
  for mask in masks[1:]:
    combined = combined & mask
  return combined


def dot_product_attention(
  query: Array,
  key: Array,
  value: Array,
  mask: Array | None = None,
  *,
  dropout_rate: float = 0.0,
  dropout_rng: Array | None = None,
  deterministic: bool = True,
) -> tuple[Array, Array]:
  """softmax(Q K^T / sqrt(d_k)) V — Vaswani et al. 2017, §3.2.1, Eq. 1.

  Args:
    query: [b, q, h, d_k]. key: [b, k, h, d_k]. value: [b, k, h, d_v].
    mask: boolean, broadcastable to [b, h, q, k]; True = attend.
    dropout_rate: dropout on the attention weights (off when `deterministic`).

  Returns:
    (output [b, q, h, d_v], weights [b, h, q, k]). A query whose keys are all masked gets all-zero
    weights, hence a zero output — never NaN.
  """
  query = query / jnp.sqrt(query.shape[-1]).astype(query.dtype)
  # Logits and softmax in float32, whatever the compute dtype.
  logits = jnp.einsum("bqhd,bkhd->bhqk", query, key, preferred_element_type=jnp.float32)
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  weights = jax.nn.softmax(logits, axis=-1)
  if mask is not None:
    weights = jnp.where(mask, weights, 0.0)  # all-masked rows: uniform -> zeros
  if not deterministic and dropout_rate > 0.0:
    if dropout_rng is None:
      raise ValueError("dropout_rate > 0 with deterministic=False needs a dropout_rng")
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights.shape)
    weights = jnp.where(keep, weights / (1.0 - dropout_rate), 0.0)
  weights = weights.astype(value.dtype)
  return jnp.einsum("bhqk,bkhd->bqhd", weights, value), weights


class MultiHeadAttention(nn.Module):
  """Multi-head attention (§3.2.2) with an optional fixed-size key/value cache.

  Self-attention (`inputs_kv` is None) uses one fused projection `qkv` whose kernel is
  [d_model, h*d_k | h*d_k | h*d_v] — the layout of GPT-2's `c_attn`. Cross-attention uses
  `query` and `key_value` projections. `d_k` and `d_v` default to d_model / num_heads. With
  `lora`, each projection carries a low-rank adapter (`tfjax.nn.lora`).

  With `decode=True` (self-attention only), keys and values are written into a cache at the
  absolute `positions` of the query tokens, and each query attends to every cached key at or
  before its own position. The cache is created, with the input's shape, by `init` on a
  [batch, max_len] input; rows may sit at different positions (prompts of different lengths).
  """

  num_heads: int
  d_k: int | None = None
  d_v: int | None = None
  out_features: int | None = None
  dropout_rate: float = 0.0
  use_bias: bool = True
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  out_kernel_init: nn.initializers.Initializer | None = None
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  decode: bool = False
  lora: lora_lib.LoRA | None = None  # low-rank adapters on all four projections

  @nn.compact
  def __call__(
    self,
    inputs_q: Array,
    inputs_kv: Array | None = None,
    mask: Array | None = None,
    *,
    positions: Array | None = None,
    deterministic: bool = True,
  ) -> Array:
    d_model = inputs_q.shape[-1]
    heads = self.num_heads
    if (self.d_k is None or self.d_v is None) and d_model % heads:
      raise ValueError(
        f"d_model={d_model} is not divisible by num_heads={heads}; choose d_model as a "
        "multiple of num_heads, or set d_k and d_v explicitly"
      )
    d_k = self.d_k or d_model // heads
    d_v = self.d_v or d_model // heads
    dense = lambda features, name: lora_lib.dense(
      features,
      self.lora,
      use_bias=self.use_bias,
      kernel_init=self.kernel_init,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name=name,
    )
    if inputs_kv is None:
      qkv = dense(heads * (2 * d_k + d_v), "qkv")(inputs_q)
      query, key, value = jnp.split(qkv, [heads * d_k, 2 * heads * d_k], axis=-1)
    else:
      query = dense(heads * d_k, "query")(inputs_q)
      key, value = jnp.split(dense(heads * (d_k + d_v), "key_value")(inputs_kv), [heads * d_k], -1)
    # [b, t, h*d] -> [b, t, h, d]
    query = query.reshape(*query.shape[:-1], heads, d_k)
    key = key.reshape(*key.shape[:-1], heads, d_k)
    value = value.reshape(*value.shape[:-1], heads, d_v)

    if self.decode:
      if inputs_kv is not None:
        raise ValueError("the key/value cache is for self-attention; pass inputs_kv=None")
      key, value, mask = self._update_cache(key, value, mask, positions)

    dropout_rng = None
    if not deterministic and self.dropout_rate > 0.0:
      dropout_rng = self.make_rng("dropout")
    out, weights = dot_product_attention(
      query,
      key,
      value,
      mask,
      dropout_rate=self.dropout_rate,
      dropout_rng=dropout_rng,
      deterministic=deterministic,
    )
    self.sow("intermediates", "attention_weights", weights)  # kept only if asked for
    out = out.reshape(*out.shape[:-2], heads * d_v)  # [b, q, h*d_v]
    return lora_lib.dense(
      self.out_features or d_model,
      self.lora,
      use_bias=self.use_bias,
      kernel_init=self.out_kernel_init or self.kernel_init,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="out",
    )(out)

  def _update_cache(
    self, key: Array, value: Array, mask: Array | None, positions: Array | None
  ) -> tuple[Array, Array, Array | None]:
    """Writes this call's keys/values at `positions`; returns the whole cache and its mask."""
    if self.is_initializing():  # `init` on a [batch, max_len] input: the cache takes its shape.
      self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
      self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
      return key, value, mask
    if not self.has_variable("cache", "cached_key"):
      raise ValueError(
        "decode=True needs the key/value cache: apply with {'params': ..., 'cache': ...} and "
        "mutable=['cache'] (tfjax.inference.sampling.init_cache builds one)"
      )
    if positions is None:
      raise ValueError("decoding with a cache needs the absolute `positions` of the tokens")
    cached_key = self.variable("cache", "cached_key")
    cached_value = self.variable("cache", "cached_value")
    rows = jnp.arange(key.shape[0])[:, None]
    cached_key.value = cached_key.value.at[rows, positions].set(key)
    cached_value.value = cached_value.value.at[rows, positions].set(value)
    cache_len = cached_key.value.shape[1]
    # [b, 1, t, cache_len]: each query sees the cached keys at or before its own position.
    visible = jnp.arange(cache_len)[None, None, None, :] <= positions[:, None, :, None]
    return cached_key.value, cached_value.value, combine_masks(visible, mask)
