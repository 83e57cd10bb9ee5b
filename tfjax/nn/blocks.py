"""A transformer layer: attention and feed-forward sublayers, each in residual + LayerNorm.

Post-LN, as in the original Transformer, GPT-1 and BERT: x = LayerNorm(x + Dropout(Sublayer(x)))
(Vaswani et al. 2017, §5.4). Pre-LN, as in GPT-2 (Radford et al. 2019, §2.3):
x = x + Dropout(Sublayer(LayerNorm(x))); a pre-LN stack ends with one more LayerNorm, which the
model adds.
"""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from tfjax.nn import lora as lora_lib
from tfjax.nn.attention import MultiHeadAttention
from tfjax.nn.feedforward import FeedForward

Array = jax.Array


class TransformerLayer(nn.Module):
  """Self-attention, optional cross-attention (decoder of an encoder–decoder), feed-forward.

  Parameters: `self_attention`, `cross_attention`, `mlp`, each with its LayerNorm
  `<name>_norm`. `out_kernel_init` initialises the projections that write into the residual
  stream (GPT-2 scales them by 1/sqrt(2 * num_layers)). `lora` puts low-rank adapters on the
  attention projections, and on the MLP's with `lora.mlp` (Hu et al. 2021, §4.2).
  """

  num_heads: int
  d_ff: int
  d_k: int | None = None
  d_v: int | None = None
  activation: str = "relu"
  pre_norm: bool = False
  cross_attention: bool = False
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  layer_norm_epsilon: float = 1e-5
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  out_kernel_init: nn.initializers.Initializer | None = None
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  decode: bool = False
  lora: lora_lib.LoRA | None = None

  @nn.compact
  def __call__(
    self,
    x: Array,
    mask: Array | None = None,
    *,
    encoded: Array | None = None,
    cross_mask: Array | None = None,
    positions: Array | None = None,
    deterministic: bool = True,
  ) -> Array:
    attention = lambda name, decode: MultiHeadAttention(
      num_heads=self.num_heads,
      d_k=self.d_k,
      d_v=self.d_v,
      dropout_rate=self.attention_dropout_rate,
      kernel_init=self.kernel_init,
      out_kernel_init=self.out_kernel_init,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      decode=decode,
      lora=self.lora,
      name=name,
    )
    self_attention = attention("self_attention", self.decode)
    x = self._residual(
      "self_attention",
      lambda y: self_attention(y, mask=mask, positions=positions, deterministic=deterministic),
      x,
      deterministic,
    )
    if self.cross_attention:
      if encoded is None:
        raise ValueError("a layer with cross_attention=True needs the encoder output `encoded`")
      cross_attention = attention("cross_attention", False)
      x = self._residual(
        "cross_attention",
        lambda y: cross_attention(y, encoded, cross_mask, deterministic=deterministic),
        x,
        deterministic,
      )
    mlp = FeedForward(
      d_ff=self.d_ff,
      activation=self.activation,
      kernel_init=self.kernel_init,
      out_kernel_init=self.out_kernel_init,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      lora=self.lora if self.lora is not None and self.lora.mlp else None,
      name="mlp",
    )
    return self._residual("mlp", mlp, x, deterministic)

  def _residual(
    self, name: str, sublayer: Callable[[Array], Array], x: Array, deterministic: bool
  ) -> Array:
    norm = nn.LayerNorm(
      epsilon=self.layer_norm_epsilon,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name=f"{name}_norm",
    )
    dropout = nn.Dropout(self.dropout_rate)
    if self.pre_norm:
      return x + dropout(sublayer(norm(x)), deterministic=deterministic)
    return norm(x + dropout(sublayer(x), deterministic=deterministic))
