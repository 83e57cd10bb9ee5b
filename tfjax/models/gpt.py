"""GPT-1 and GPT-2: decoder-only causal language models (Radford et al. 2018, 2019).

tokens [b, t] -> token + learned position embeddings -> dropout -> num_layers x
TransformerLayer (causal self-attention + MLP) -> (pre-LN: final LayerNorm) -> logits [b, t, V]
through the transposed token embedding (tied output, as HF's GPT-2 and OpenAIGPT).

The layers are either `num_layers` submodules `layer_{i}`, or (`scan_layers=True`) one
`nn.scan` over a submodule `layers` whose parameters (and KV cache) have a leading
[num_layers] axis: XLA then compiles one layer, not num_layers copies.
`tfjax.models.layout.stack_layers` / `unstack_layers` convert between the two layouts.
"""

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tfjax.models.config import REMAT_POLICIES, ModelConfig, constrain
from tfjax.nn.attention import causal_mask
from tfjax.nn.blocks import TransformerLayer
from tfjax.nn.embedding import LearnedPositionEmbedding, TokenEmbedding

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class GPTConfig(ModelConfig):
  """Hyper-parameters of a GPT; `configs/gpt*.py` hold the published sizes."""

  vocab_size: int
  max_len: int  # size of the learned position table (context length)
  num_layers: int
  num_heads: int
  d_model: int
  d_ff: int
  activation: str = "gelu_tanh"
  pre_norm: bool = True  # GPT-2; GPT-1 is post-LN
  tie_embeddings: bool = True
  dropout_rate: float = 0.1  # embeddings and residual branches
  attention_dropout_rate: float = 0.1
  layer_norm_epsilon: float = 1e-5
  init_std: float = 0.02  # N(0, 0.02) init (GPT-1 §4.1)
  scale_residual_init: bool = True  # GPT-2 §2.3: residual projections std / sqrt(2 * num_layers)
  dtype: str = "float32"  # compute dtype; parameters stay float32
  remat_policy: str = "none"  # activation rematerialisation of each layer: see REMAT_POLICIES
  scan_layers: bool = False  # one nn.scan over stacked layer params: fast compiles of deep models
  decode: bool = False  # incremental decoding with a key/value cache

  def __post_init__(self):
    self.check("vocab_size", "max_len", "num_layers", "num_heads", "d_model", "d_ff")


class GPT(nn.Module):
  """Causal language model. Returns float32 logits [b, t, vocab_size].

  `activation_sharding` (a `jax.sharding.Sharding` of the batch axis, e.g. over data x fsdp)
  pins the activations between layers to the batch split. Without it XLA may follow the
  weights' FSDP sharding into the activations and compute every layer for the whole global
  batch on every device. None (one device, shard_map, pmap): no constraint.
  """

  config: GPTConfig
  activation_sharding: Any = None

  @nn.compact
  def __call__(
    self, tokens: Array, *, positions: Array | None = None, deterministic: bool = True
  ) -> Array:
    cfg = self.config
    batch, length = tokens.shape
    if length > cfg.max_len:
      raise ValueError(
        f"sequence length {length} is longer than the position table (max_len={cfg.max_len}); "
        "shorten the input or raise model.max_len"
      )
    if positions is None:
      if cfg.decode and not self.is_initializing():
        raise ValueError("decode=True needs the absolute `positions` [batch, length] of the tokens")
      positions = jnp.broadcast_to(jnp.arange(length), (batch, length))
    dtype = jnp.dtype(cfg.dtype)
    init = nn.initializers.normal(stddev=cfg.init_std)
    out_std = cfg.init_std / math.sqrt(2 * cfg.num_layers) if cfg.scale_residual_init else None

    token_embed = TokenEmbedding(
      cfg.vocab_size, cfg.d_model, embedding_init=init, dtype=dtype, name="token_embed"
    )
    x = token_embed(tokens) + LearnedPositionEmbedding(
      cfg.max_len, cfg.d_model, embedding_init=init, dtype=dtype, name="position_embed"
    )(positions)  # [b, t, d_model]
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
    x = self._constrain(x)

    # When decoding, each attention layer builds its mask from the cache and `positions`.
    mask = None if cfg.decode and not self.is_initializing() else causal_mask(length)
    layer = lambda name: TransformerLayer(
      num_heads=cfg.num_heads,
      d_ff=cfg.d_ff,
      activation=cfg.activation,
      pre_norm=cfg.pre_norm,
      dropout_rate=cfg.dropout_rate,
      attention_dropout_rate=cfg.attention_dropout_rate,
      layer_norm_epsilon=cfg.layer_norm_epsilon,
      kernel_init=init,
      out_kernel_init=nn.initializers.normal(stddev=out_std) if out_std else None,
      dtype=dtype,
      decode=cfg.decode,
      name=name,
    )
    forward = _layer_forward
    policy = REMAT_POLICIES[cfg.remat_policy]
    if policy is not None:
      # `deterministic` (argument 4) is a Python bool that selects code: static, not traced.
      # Inside a scan the loop boundary already keeps XLA from merging the recomputation away.
      forward = nn.remat(
        forward, policy=policy, static_argnums=(4,), prevent_cse=not cfg.scan_layers
      )
    if cfg.scan_layers:
      scan = nn.scan(
        functools.partial(
          _scan_body, forward, functools.partial(constrain, self.activation_sharding)
        ),
        variable_axes={"params": 0, "cache": 0, "intermediates": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=(nn.broadcast, nn.broadcast, nn.broadcast),
        length=cfg.num_layers,
        metadata_params={nn.PARTITION_NAME: "layers"},
      )
      x, _ = scan(layer("layers"), x, mask, positions, deterministic)
    else:
      for i in range(cfg.num_layers):
        x = self._constrain(forward(layer(f"layer_{i}"), x, mask, positions, deterministic))
    if cfg.pre_norm:
      x = nn.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=dtype, name="final_norm")(x)

    if cfg.tie_embeddings:
      logits = token_embed.attend(x)
    else:
      logits = nn.Dense(
        cfg.vocab_size,
        use_bias=False,
        kernel_init=init,
        dtype=dtype,
        dot_general=_float32_dot_general,  # logits never rounded to bfloat16
        name="lm_head",
      )(x)
    return self._constrain(logits.astype(jnp.float32))  # [b, t, vocab_size]

  def _constrain(self, x: Array) -> Array:
    return constrain(self.activation_sharding, x)


_float32_dot_general = functools.partial(jax.lax.dot_general, preferred_element_type=jnp.float32)


def _layer_forward(
  layer: TransformerLayer, x: Array, mask: Array | None, positions: Array, deterministic: bool
) -> Array:
  """One layer with positional arguments only, as nn.remat's static_argnums and nn.scan need."""
  return layer(x, mask, positions=positions, deterministic=deterministic)


def _scan_body(
  forward: Callable[..., Array],
  constrain: Callable[[Array], Array],
  layer: TransformerLayer,
  x: Array,
  mask: Array | None,
  positions: Array,
  deterministic: bool,
) -> tuple[Array, None]:
  """nn.scan's (carry, inputs) -> (carry, outputs) form of `forward`: x is the carry."""
  return constrain(forward(layer, x, mask, positions, deterministic)), None


def count_params(config: GPTConfig) -> int:
  """Number of parameters, from shapes alone (`jax.eval_shape`: nothing is allocated)."""
  tokens = jax.ShapeDtypeStruct((1, config.max_len), jnp.int32)
  shapes = jax.eval_shape(GPT(config.replace(decode=False)).init, jax.random.key(0), tokens)
  return sum(math.prod(p.shape) for p in jax.tree.leaves(shapes["params"]))
