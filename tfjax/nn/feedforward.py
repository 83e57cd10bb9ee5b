"""Position-wise feed-forward network (Vaswani et al. 2017, §3.3, Eq. 2)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from tfjax.nn import lora as lora_lib

Array = jax.Array

ACTIVATIONS = {
  "relu": nn.relu,  # the original Transformer
  "gelu": functools.partial(nn.gelu, approximate=False),  # BERT, ViT (exact erf form)
  "gelu_tanh": functools.partial(nn.gelu, approximate=True),  # GPT-1/GPT-2 ("gelu_new")
}


def activation_fn(name: str):
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
  return ACTIVATIONS[name]


class FeedForward(nn.Module):
  """FFN(x) = act(x W1 + b1) W2 + b2, applied to each position alone; with `lora`, W1 and W2
  carry low-rank adapters (`tfjax.nn.lora`)."""

  d_ff: int
  activation: str = "relu"
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  out_kernel_init: nn.initializers.Initializer | None = None
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  lora: lora_lib.LoRA | None = None

  @nn.compact
  def __call__(self, x: Array) -> Array:
    d_model = x.shape[-1]
    h = lora_lib.dense(
      self.d_ff,
      self.lora,
      kernel_init=self.kernel_init,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="hidden",
    )(x)  # [b, t, d_ff]
    h = activation_fn(self.activation)(h)
    return lora_lib.dense(
      d_model,
      self.lora,
      kernel_init=self.out_kernel_init or self.kernel_init,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="output",
    )(h)
