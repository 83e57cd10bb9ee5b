"""Token and positional embeddings (Vaswani et al. 2017, §3.4–3.5)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def sinusoidal_positions(length: int, d_model: int) -> np.ndarray:
  """[length, d_model] table of §3.5: PE(pos, 2i) = sin(pos / 10000^(2i/d_model)),
  PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model))."""
  pos = np.arange(length, dtype=np.float64)[:, None]
  two_i = np.arange(0, d_model, 2, dtype=np.float64)[None, :]  # 2i = 0, 2, 4, ...
  angles = pos / np.power(10000.0, two_i / d_model)
  table = np.zeros((length, d_model), dtype=np.float64)
  table[:, 0::2] = np.sin(angles)
  table[:, 1::2] = np.cos(angles[:, : d_model // 2])
  return table.astype(np.float32)


class LearnedPositionEmbedding(nn.Module):
  """A learned [max_len, features] table (GPT, BERT, ViT), looked up at `positions`."""

  max_len: int
  features: int
  embedding_init: nn.initializers.Initializer = nn.initializers.normal(stddev=0.02)
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, positions: Array) -> Array:
    table = self.param(
      "embedding", self.embedding_init, (self.max_len, self.features), self.param_dtype
    )
    return jnp.take(table, positions, axis=0).astype(self.dtype)


class TokenEmbedding(nn.Embed):
  """Token embedding; `attend(x)` is the tied output projection x @ E^T (§3.4)."""

  def attend(self, query: Array) -> Array:
    """x @ E^T in the compute dtype, accumulated and returned in float32: the logits feed a
    softmax over the whole vocabulary, so they are never rounded to bfloat16."""
    query, embedding = self.promote_dtype(query, self.embedding, dtype=self.dtype)
    return jnp.einsum("...d,vd->...v", query, embedding, preferred_element_type=jnp.float32)
