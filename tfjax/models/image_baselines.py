"""The baselines ViT is measured against: a small CNN and softmax regression on the raw pixels.

Dosovitskiy et al. 2020 (§4.2, Fig. 3-4): ViT "overfits more than ResNets with comparable
computational cost" on small datasets; convolutions build in locality and translation
equivariance, which a ViT must learn from data. `CNN` is the classic small image classifier
(LeCun et al. 1998's pattern: 3x3 convolutions + ReLU, 2x2 max-pooling, then dense layers);
`SoftmaxRegression` is one linear layer on the pixels, the floor any model must beat.
Both take images [b, H, W, C] (float) and return logits [b, num_classes] (float32), as `ViT`.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from tfjax.models.config import ModelConfig, check_dtype

Array = jax.Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class CNNConfig(ModelConfig):
  """A stack of conv blocks (channels per block; each: conv 3x3 + ReLU, then a 2x2 max-pool),
  a dense hidden layer, dropout, the head."""

  image_size: int = 28
  num_channels: int = 1
  num_classes: int = 10
  channels: tuple[int, ...] = (32, 64)
  d_hidden: int = 64
  dropout_rate: float = 0.0
  dtype: str = "float32"

  def __post_init__(self):
    object.__setattr__(self, "channels", tuple(self.channels))  # a JSON list comes back
    for name in ("image_size", "num_channels", "num_classes", "d_hidden"):
      if getattr(self, name) <= 0:
        raise ValueError(f"model.{name}={getattr(self, name)} must be positive")
    if not self.channels or min(self.channels) <= 0:
      raise ValueError(f"model.channels={self.channels} must be positive channel counts")
    if self.image_size < 2 ** len(self.channels):
      raise ValueError(
        f"model.image_size={self.image_size} is too small for {len(self.channels)} 2x2 "
        "poolings; use fewer model.channels"
      )
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(f"model.dropout_rate={self.dropout_rate} must be in [0, 1)")
    check_dtype(self.dtype)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LinearConfig(ModelConfig):
  """Softmax regression: logits = flatten(image) W + b."""

  image_size: int = 28
  num_channels: int = 1
  num_classes: int = 10
  dtype: str = "float32"

  def __post_init__(self):
    for name in ("image_size", "num_channels", "num_classes"):
      if getattr(self, name) <= 0:
        raise ValueError(f"model.{name}={getattr(self, name)} must be positive")
    check_dtype(self.dtype)


# Logical axes: the baselines are small and stay replicated (no sharding rule maps these names).
PARAM_AXES = (
  (r"conv_\d+/kernel", ("kernel_h", "kernel_w", "in_channels", "out_channels")),
  (r"conv_\d+/bias", ("out_channels",)),
  (r"(hidden|classifier)/kernel", ("in_features", "out_features")),
  (r"(hidden|classifier)/bias", ("out_features",)),
)


def check_image_shape(config: CNNConfig | LinearConfig, images: Array) -> None:
  """Raises a one-line ValueError unless `images` is [b, image_size, image_size, num_channels]."""
  want = (config.image_size, config.image_size, config.num_channels)
  if images.ndim != 4 or tuple(images.shape[1:]) != want:
    raise ValueError(
      f"images have shape {tuple(images.shape)} but the model takes [b, {want[0]}, {want[1]}, "
      f"{want[2]}]; set model.image_size / model.num_channels to the data's"
    )


class CNN(nn.Module):
  config: CNNConfig
  activation_sharding: object = None  # the trainer's interface; the baselines do not pin it

  @nn.compact
  def __call__(self, images: Array, *, deterministic: bool = True) -> Array:
    cfg = self.config
    check_image_shape(cfg, images)
    dtype = jnp.dtype(cfg.dtype)
    x = images.astype(dtype)
    for i, channels in enumerate(cfg.channels):
      x = nn.relu(nn.Conv(channels, (3, 3), padding="SAME", dtype=dtype, name=f"conv_{i}")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))  # [b, H / 2^(i+1), W / 2^(i+1), channels]
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(cfg.d_hidden, dtype=dtype, name="hidden")(x))
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
    return nn.Dense(cfg.num_classes, dtype=dtype, name="classifier")(x).astype(jnp.float32)


class SoftmaxRegression(nn.Module):
  config: LinearConfig
  activation_sharding: object = None

  @nn.compact
  def __call__(self, images: Array, *, deterministic: bool = True) -> Array:
    del deterministic  # nothing random
    cfg = self.config
    check_image_shape(cfg, images)
    x = images.reshape(images.shape[0], -1).astype(jnp.dtype(cfg.dtype))
    return nn.Dense(cfg.num_classes, dtype=x.dtype, name="classifier")(x).astype(jnp.float32)
