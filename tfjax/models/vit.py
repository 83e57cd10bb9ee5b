"""ViT: an image as a sequence of patch tokens on a Transformer encoder (Dosovitskiy et al. 2020).

images [b, H, W, C] -> non-overlapping P x P patches, each linearly embedded (a convolution with
kernel = stride = P: Eq. 1's E) -> [b, N, d], N = (H / P) * (W / P) -> a learned [CLS] token
prepended (§3.1, "similar to BERT's [class] token") -> + learned position embeddings (N + 1 of
them) -> dropout -> num_layers x pre-LN TransformerLayer (Eq. 2-3) -> final LayerNorm (Eq. 4)
-> pooled [b, d]: the [CLS] state ("cls", the paper and HF), or the mean of the patch states
("gap", big_vision: such a model has no [CLS] token) -> optional pre-logits dense + tanh (HF's
pooler, the paper's hidden layer for pre-training) -> the classification head.

`ViTModel` is the body (HF ViTModel); `ViT` the classifier (HF ViTForImageClassification), which
nests the body under "vit". `resample_posemb` moves a position table to another patch grid, to
fine-tune at another resolution (§3.2).
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from tfjax.models.config import ModelConfig
from tfjax.nn import partitioning
from tfjax.nn.blocks import TransformerLayer
from tfjax.nn.embedding import LearnedPositionEmbedding
from tfjax.nn.lora import LoRA
from tfjax.nn.stack import apply_layers, constrain, layer_values

Array = jax.Array

POOLINGS = ("cls", "gap")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ViTConfig(ModelConfig):
  """Hyper-parameters of a ViT; the defaults are ViT-B/16 at 224 (HF ViTConfig's own)."""

  image_size: int = 224  # square images of image_size x image_size pixels
  patch_size: int = 16
  num_channels: int = 3
  num_classes: int = 1000  # 0: no head (features only)
  num_layers: int = 12
  num_heads: int = 12
  d_model: int = 768
  d_ff: int = 3072
  activation: str = "gelu"  # HF: exact GELU; the original JAX checkpoints: "gelu_tanh"
  dropout_rate: float = 0.0  # after the position embeddings and on the residual branches
  attention_dropout_rate: float = 0.0
  layer_norm_epsilon: float = 1e-12  # HF's default; the original JAX checkpoints use 1e-6
  init_std: float = 0.02  # N(0, init_std) position embeddings (HF initializer_range)
  pooling: str = "cls"  # "cls": the [CLS] state; "gap": mean of the patch states, no [CLS]
  pre_logits: bool = False  # a dense + tanh layer before the head (HF's pooler)
  dtype: str = "float32"  # compute dtype; parameters stay float32
  remat_policy: str = "none"  # activation rematerialisation of each layer: see REMAT_POLICIES
  scan_layers: bool = False  # one nn.scan over stacked layer params: fast compiles of deep models
  # Low-rank adapters on the layers' projections; fine-tuning tasks set it from config.lora.
  lora: LoRA | None = None

  def __post_init__(self):
    self.check("image_size", "patch_size", "num_channels", "num_layers", "num_heads", "d_model")
    self.check("d_ff")
    if self.image_size % self.patch_size:
      raise ValueError(
        f"model.image_size={self.image_size} is not divisible by model.patch_size="
        f"{self.patch_size}; choose an image size that is a multiple of the patch size "
        f"(e.g. {self.image_size - self.image_size % self.patch_size or self.patch_size})"
      )
    if self.num_classes < 0:
      raise ValueError(f"model.num_classes={self.num_classes} must be >= 0 (0: no head)")
    if self.pooling not in POOLINGS:
      raise ValueError(f"model.pooling={self.pooling!r} is unknown; choose one of {POOLINGS}")

  @property
  def grid(self) -> tuple[int, int]:
    """Patches along the height and the width of an image."""
    return self.image_size // self.patch_size, self.image_size // self.patch_size

  @property
  def num_prefix_tokens(self) -> int:
    """Tokens before the patches: the [CLS] token, or none with gap pooling."""
    return 1 if self.pooling == "cls" else 0

  @property
  def num_tokens(self) -> int:
    """Sequence length of the encoder: N patches (+ [CLS])."""
    return self.num_prefix_tokens + self.grid[0] * self.grid[1]


# Logical axes of ViT's own parameters; the classes axis is named by no sharding rule, so the
# head stays replicated along it.
PARAM_AXES = (
  (r"patch_embed/kernel", ("patch", "patch", "channels", "embed")),
  (r"patch_embed/bias", ("embed",)),
  (r"cls_token", ("embed",)),
  (r"pre_logits/kernel", ("embed", "embed")),  # mesh_spec shards one of the two
  (r"pre_logits/bias", ("embed",)),
  (r"classifier/kernel", ("embed", "classes")),
  (r"classifier/bias", ("classes",)),
  *partitioning.PARAM_AXES,
)


@flax.struct.dataclass
class ViTOutput:
  """The body's outputs, float32. `hidden_states`: the embeddings' output, then each layer's
  (before the final LayerNorm, as HF), [num_layers + 1] x [b, tokens, d], when asked for."""

  last_hidden_state: Array  # [b, tokens, d], after the final LayerNorm
  pooled: Array  # [b, d]
  hidden_states: tuple[Array, ...] | None = None


def check_images(config: ViTConfig, images: Any) -> None:
  """Raises a one-line ValueError unless `images` is [b, image_size, image_size, num_channels]."""
  shape = tuple(np.shape(images))
  if len(shape) != 4:
    raise ValueError(f"images have shape {shape}; give a batch [b, height, width, channels]")
  _, height, width, channels = shape
  p = config.patch_size
  if height % p or width % p:
    raise ValueError(
      f"images of {height}x{width} pixels do not split into {p}x{p} patches; resize or crop "
      f"them to a multiple of model.patch_size={p}"
    )
  if channels != config.num_channels:
    raise ValueError(
      f"images have {channels} channels but the model takes model.num_channels="
      f"{config.num_channels}; convert them (grayscale <-> RGB) or set model.num_channels"
    )
  if (height, width) != (config.image_size, config.image_size):
    raise ValueError(
      f"images of {height}x{width} pixels give a {height // p}x{width // p} patch grid, but the "
      f"model's position embeddings are for {config.image_size}x{config.image_size} "
      f"({config.grid[0]}x{config.grid[1]}); resize the images, or move the weights to this size "
      "with tfjax.models.vit.resample_params (init.resample_posemb=True when fine-tuning)"
    )


class ViTModel(nn.Module):
  """Patch embedding, [CLS], positions, the encoder, final LayerNorm, pooling (+ pre-logits).
  `activation_sharding` pins the activations between layers to the batch split."""

  config: ViTConfig
  activation_sharding: Any = None

  @nn.compact
  def __call__(
    self, images: Array, *, deterministic: bool = True, return_hidden_states: bool = False
  ) -> ViTOutput:
    cfg = self.config
    check_images(cfg, images)
    dtype = jnp.dtype(cfg.dtype)
    p = cfg.patch_size
    x = nn.Conv(
      cfg.d_model, (p, p), strides=(p, p), padding="VALID", dtype=dtype, name="patch_embed"
    )(images.astype(dtype))  # [b, H/P, W/P, d]
    x = x.reshape(x.shape[0], -1, cfg.d_model)  # [b, N, d], patches in row-major order
    if cfg.pooling == "cls":
      cls = self.param("cls_token", nn.initializers.zeros, (cfg.d_model,), jnp.float32)
      cls = jnp.broadcast_to(cls.astype(dtype), (x.shape[0], 1, cfg.d_model))
      x = jnp.concatenate([cls, x], axis=1)  # [b, 1 + N, d]
    positions = LearnedPositionEmbedding(
      cfg.num_tokens,
      cfg.d_model,
      embedding_init=nn.initializers.normal(stddev=cfg.init_std),
      dtype=dtype,
      name="position_embed",
    )(jnp.arange(cfg.num_tokens))
    x = nn.Dropout(cfg.dropout_rate)(x + positions[None], deterministic=deterministic)
    x = constrain(self.activation_sharding, x)

    layer = lambda name: TransformerLayer(
      num_heads=cfg.num_heads,
      d_ff=cfg.d_ff,
      activation=cfg.activation,
      pre_norm=True,
      dropout_rate=cfg.dropout_rate,
      attention_dropout_rate=cfg.attention_dropout_rate,
      layer_norm_epsilon=cfg.layer_norm_epsilon,
      kernel_init=nn.initializers.xavier_uniform(),  # as the original ViT and big_vision
      lora=cfg.lora,
      dtype=dtype,
      name=name,
    )
    embedded = x
    x, layer_outputs = apply_layers(
      layer,
      x,
      {},  # every token attends to every token: no mask
      num_layers=cfg.num_layers,
      deterministic=deterministic,
      scan=cfg.scan_layers,
      remat_policy=cfg.remat_policy,
      activation_sharding=self.activation_sharding,
      keep_outputs=return_hidden_states,
    )
    x = nn.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=dtype, name="final_norm")(x)

    pooled = x[:, 0] if cfg.pooling == "cls" else x.mean(axis=1)  # [b, d]
    if cfg.pre_logits:
      pooled = jnp.tanh(nn.Dense(cfg.d_model, dtype=dtype, name="pre_logits")(pooled))
    f32 = lambda a: a.astype(jnp.float32)
    return ViTOutput(
      last_hidden_state=f32(x),
      pooled=f32(pooled),
      hidden_states=tuple(map(f32, (embedded, *layer_outputs))) if return_hidden_states else None,
    )


class ViT(nn.Module):
  """The classifier: the body under "vit", then logits [b, num_classes] (float32) from a
  zero-initialised linear head on the pooled state (as big_vision; §3.1 "a single linear layer
  at fine-tuning time")."""

  config: ViTConfig
  activation_sharding: Any = None

  @nn.compact
  def __call__(self, images: Array, *, deterministic: bool = True) -> Array:
    cfg = self.config
    if cfg.num_classes == 0:
      raise ValueError("model.num_classes=0 has no head; use ViTModel for the features")
    out = ViTModel(cfg, self.activation_sharding, name="vit")(images, deterministic=deterministic)
    head = nn.Dense(
      cfg.num_classes,
      kernel_init=nn.initializers.zeros,
      dtype=jnp.dtype(cfg.dtype),
      name="classifier",
    )
    return head(out.pooled.astype(jnp.dtype(cfg.dtype))).astype(jnp.float32)


HEADS = {"model": ViTModel, "classifier": ViT}


def abstract_params(module: nn.Module, batch: int = 1) -> Any:
  """The `params` of a ViT or ViTModel as ShapeDtypeStructs (nothing is allocated)."""
  cfg = module.config
  images = jax.ShapeDtypeStruct(
    (batch, cfg.image_size, cfg.image_size, cfg.num_channels), jnp.float32
  )
  return jax.eval_shape(module.init, jax.random.key(0), images)["params"]


def attention_weights(intermediates: Mapping[str, Any]) -> list[Array]:
  """Each layer's attention weights [b, h, tokens, tokens], in layer order, from the state of an
  apply with mutable=["intermediates"] (of ViTModel or ViT: the "vit" prefix is looked through)."""
  tree = intermediates.get("intermediates", intermediates)
  return layer_values(tree.get("vit", tree), ("self_attention", "attention_weights"))


# ------------------------------------------------------------------------- a new resolution


def _linear_resize(x: np.ndarray, size: int, axis: int) -> np.ndarray:
  """Linear interpolation of `x` along `axis` to `size` points, the end points kept (output
  point o samples input coordinate o * (n - 1) / (size - 1), as scipy.ndimage.zoom(order=1))."""
  n = x.shape[axis]
  if n == size:
    return x
  coords = np.linspace(0.0, n - 1, size) if size > 1 else np.zeros(1)
  low = np.clip(np.floor(coords).astype(int), 0, n - 1)
  high = np.minimum(low + 1, n - 1)
  frac = (coords - low).reshape([-1 if a == axis % x.ndim else 1 for a in range(x.ndim)])
  return np.take(x, low, axis) * (1.0 - frac) + np.take(x, high, axis) * frac


def resample_posemb(
  table: Any, old_grid: tuple[int, int], new_grid: tuple[int, int], num_prefix_tokens: int = 1
) -> np.ndarray:
  """A position table [prefix + h*w, d] for another patch grid: the patch rows, seen as an
  [h, w, d] image, resized bilinearly to `new_grid` (as big_vision's `resample_posemb`, i.e.
  `scipy.ndimage.zoom(order=1)`); the [CLS] row (the first `num_prefix_tokens`) kept apart."""
  table = np.asarray(table, np.float32)
  (h, w), (new_h, new_w) = old_grid, new_grid
  if table.ndim != 2 or table.shape[0] != num_prefix_tokens + h * w:
    raise ValueError(
      f"a position table of shape {table.shape} is not {num_prefix_tokens} + {h}x{w} rows of "
      "embeddings; give the table of the checkpoint and its patch grid"
    )
  prefix, grid = table[:num_prefix_tokens], table[num_prefix_tokens:].reshape(h, w, -1)
  grid = _linear_resize(_linear_resize(grid, new_h, 0), new_w, 1)
  return np.concatenate([prefix, grid.reshape(new_h * new_w, -1)]).astype(np.float32)


POSEMB_PATH = ("position_embed", "embedding")  # under the body


def resample_params(params: Mapping[str, Any], old: ViTConfig, new: ViTConfig) -> dict:
  """`params` of a ViT or ViTModel of config `old` with its position table moved to `new`'s patch
  grid (`new` differs from `old` in image_size, or patch grid, only)."""
  params = dict(params)
  body = dict(params["vit"]) if "vit" in params else params
  position = dict(body[POSEMB_PATH[0]])
  position[POSEMB_PATH[1]] = jnp.asarray(
    resample_posemb(position[POSEMB_PATH[1]], old.grid, new.grid, old.num_prefix_tokens)
  )
  body[POSEMB_PATH[0]] = position
  if "vit" in params:
    params["vit"] = body
    return params
  return body
