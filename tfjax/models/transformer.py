"""The original Transformer: an encoder–decoder for translation (Vaswani et al. 2017).

source tokens [b, s] -> shared embedding * sqrt(d_model) + positions -> dropout -> N encoder
layers (self-attention, FFN; post-LN) -> encoded [b, s, d]. target tokens shifted right [b, t]
-> the same embedding -> N decoder layers (masked self-attention, cross-attention over
`encoded`, FFN) -> logits [b, t, V] through the transposed embedding: one matrix for the encoder
input, the decoder input and the pre-softmax projection (§3.4, a shared source/target vocabulary).

Packed rows (several sentence pairs in one row, as token-count batches are built) carry
`segmentation` ids (1, 2, ... per pair, 0 = padding) and per-pair `positions`: attention then
stays inside a pair, and without them a 0 token is padding.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tfjax.models.config import ModelConfig
from tfjax.nn import partitioning
from tfjax.nn.attention import causal_mask, combine_masks, padding_mask
from tfjax.nn.blocks import TransformerLayer
from tfjax.nn.embedding import LearnedPositionEmbedding, TokenEmbedding, sinusoidal_positions
from tfjax.nn.stack import apply_layers, constrain

Array = jax.Array
POSITIONS = ("sinusoidal", "learned")
PARAM_AXES = partitioning.PARAM_AXES  # the Transformer has only the blocks' parameters


@dataclasses.dataclass(frozen=True)
class TransformerConfig(ModelConfig):
  """Hyper-parameters of Table 3; `configs/transformer_{tiny,base,big}.py` hold the sizes."""

  vocab_size: int  # shared source/target vocabulary (37,000 BPE tokens for en-de in §5.1)
  max_len: int  # longest source or target sequence (size of the position table)
  num_layers: int  # N, for the encoder and for the decoder
  num_heads: int  # h
  d_model: int
  d_ff: int
  d_k: int | None = None  # per-head query/key size; None: d_model / h (Table 3, rows A, B)
  d_v: int | None = None  # per-head value size; None: d_model / h
  activation: str = "relu"
  positions: str = "sinusoidal"  # or "learned" (Table 3, row E)
  dropout_rate: float = 0.1  # P_drop: residual branches and embedding sums (§5.4)
  attention_dropout_rate: float = 0.0  # the paper has none
  layer_norm_epsilon: float = 1e-6
  dtype: str = "float32"  # compute dtype; parameters stay float32
  remat_policy: str = "none"  # activation rematerialisation of each layer: see REMAT_POLICIES
  scan_layers: bool = False  # one nn.scan over each stack's stacked layer params
  decode: bool = False  # decoder self-attention with a key/value cache

  def __post_init__(self):
    self.check("vocab_size", "max_len", "num_layers", "num_heads", "d_model", "d_ff")
    if self.positions not in POSITIONS:
      raise ValueError(f"model.positions={self.positions!r} is unknown; choose one of {POSITIONS}")
    for name in ("d_k", "d_v"):
      if getattr(self, name) is not None and getattr(self, name) <= 0:
        raise ValueError(f"model.{name}={getattr(self, name)} must be positive (or None)")


def _valid_and_segments(tokens: Array, segmentation: Array | None) -> tuple[Array, Array | None]:
  """Per-token validity [b, t] and segment ids: packed rows mark padding with segment 0."""
  if segmentation is None:
    return tokens != 0, None
  return segmentation != 0, segmentation


def _same_segment(query_segments: Array | None, key_segments: Array | None) -> Array | None:
  """[b, 1, q, k]: True where query and key belong to the same packed pair."""
  if (query_segments is None) != (key_segments is None):
    raise ValueError(
      "packed rows need segment ids on both sides: pass inputs_segmentation and "
      "decoder_segmentation together (or neither)"
    )
  if query_segments is None:
    return None
  return query_segments[:, None, :, None] == key_segments[:, None, None, :]


def _embed(
  config: TransformerConfig,
  token_embed: TokenEmbedding,
  tokens: Array,
  positions: Array | None,
  deterministic: bool,
) -> Array:
  """Token embedding * sqrt(d_model) + positional encoding, then dropout (§3.4, §3.5, §5.4).

  Called inside an Encoder or Decoder's compact scope: a learned table is that stack's own.
  """
  length = tokens.shape[1]
  if length > config.max_len:
    raise ValueError(
      f"sequence length {length} is longer than model.max_len={config.max_len}; shorten or "
      "truncate the input (data.max_len), or raise model.max_len"
    )
  if positions is None:
    positions = jnp.broadcast_to(jnp.arange(length), tokens.shape)
  dtype = jnp.dtype(config.dtype)
  x = token_embed(tokens) * jnp.sqrt(config.d_model).astype(dtype)
  if config.positions == "learned":
    x = x + LearnedPositionEmbedding(
      config.max_len, config.d_model, dtype=dtype, name="position_embed"
    )(positions)
  else:
    x = x + jnp.take(
      jnp.asarray(sinusoidal_positions(config.max_len, config.d_model), dtype), positions, axis=0
    )
  return nn.Dropout(config.dropout_rate)(x, deterministic=deterministic)  # [b, t, d_model]


def _layer(config: TransformerConfig, name: str, decoder: bool) -> TransformerLayer:
  """An encoder layer, or a decoder layer (with cross-attention and, decoding, a cache)."""
  return TransformerLayer(
    num_heads=config.num_heads,
    d_ff=config.d_ff,
    d_k=config.d_k,
    d_v=config.d_v,
    activation=config.activation,
    pre_norm=False,  # post-LN: LayerNorm(x + Dropout(Sublayer(x))), §5.4
    cross_attention=decoder,
    dropout_rate=config.dropout_rate,
    attention_dropout_rate=config.attention_dropout_rate,
    layer_norm_epsilon=config.layer_norm_epsilon,
    kernel_init=nn.initializers.xavier_uniform(),
    dtype=jnp.dtype(config.dtype),
    decode=config.decode and decoder,  # only the decoder's self-attention caches
    name=name,
  )


def _layers(
  config: TransformerConfig,
  x: Array,
  inputs: dict[str, Any],
  decoder: bool,
  deterministic: bool,
  activation_sharding: Any,
) -> Array:
  """The N layers of one stack (tfjax.nn.stack), each output pinned to the batch split."""
  x, _ = apply_layers(
    lambda name: _layer(config, name, decoder),
    x,
    inputs,
    num_layers=config.num_layers,
    deterministic=deterministic,
    scan=config.scan_layers,
    remat_policy=config.remat_policy,
    activation_sharding=activation_sharding,
  )
  return x


class _Stack(nn.Module):
  """An encoder or decoder stack: the shared embedding table, the batch sharding of the
  activations (None: no constraint)."""

  config: TransformerConfig
  token_embed: TokenEmbedding
  activation_sharding: Any = None


class Encoder(_Stack):
  """N layers of self-attention and FFN over the embedded source (§3.1)."""

  @nn.compact
  def __call__(
    self,
    inputs: Array,
    segmentation: Array | None = None,
    positions: Array | None = None,
    deterministic: bool = True,
  ) -> Array:
    cfg = self.config
    valid, segments = _valid_and_segments(inputs, segmentation)
    mask = combine_masks(padding_mask(valid, valid), _same_segment(segments, segments))
    x = constrain(
      self.activation_sharding, _embed(cfg, self.token_embed, inputs, positions, deterministic)
    )
    x = _layers(cfg, x, {"mask": mask}, False, deterministic, self.activation_sharding)
    return x  # [b, s, d_model]


class Decoder(_Stack):
  """N layers of masked self-attention, cross-attention over the encoder output and FFN, then
  the tied pre-softmax projection (§3.1, §3.4)."""

  @nn.compact
  def __call__(
    self,
    encoded: Array,
    inputs: Array,
    decoder_inputs: Array,
    inputs_segmentation: Array | None = None,
    decoder_segmentation: Array | None = None,
    decoder_positions: Array | None = None,
    deterministic: bool = True,
  ) -> Array:
    cfg = self.config
    source_valid, source_segments = _valid_and_segments(inputs, inputs_segmentation)
    if cfg.decode and not self.is_initializing():
      # One new token per row: the cache masks the self-attention by position.
      if decoder_positions is None:
        raise ValueError("decode=True needs the absolute `decoder_positions` [batch, 1]")
      self_mask = None
      cross_mask = source_valid[:, None, None, :]  # [b, 1, 1, s]
    else:
      target_valid, target_segments = _valid_and_segments(decoder_inputs, decoder_segmentation)
      if decoder_segmentation is None:
        target_valid = jnp.ones_like(target_valid)  # padding only follows: causality hides it
      self_mask = combine_masks(
        causal_mask(decoder_inputs.shape[1]), _same_segment(target_segments, target_segments)
      )
      cross_mask = combine_masks(
        padding_mask(target_valid, source_valid), _same_segment(target_segments, source_segments)
      )
    y = _embed(cfg, self.token_embed, decoder_inputs, decoder_positions, deterministic)
    y = constrain(self.activation_sharding, y)
    inputs = {
      "mask": self_mask,
      "encoded": encoded,
      "cross_mask": cross_mask,
      "positions": decoder_positions,
    }
    y = _layers(cfg, y, inputs, True, deterministic, self.activation_sharding)
    logits = self.token_embed.attend(y).astype(jnp.float32)  # [b, t, V]
    return constrain(self.activation_sharding, logits)


class Transformer(nn.Module):
  """Encoder–decoder. `__call__` gives training logits; `encode` and `decode` serve decoding
  (`model.apply(variables, ..., method="encode")`).

  `activation_sharding` (a batch `Sharding`) pins activations between layers to the batch
  split under sharded jit, as in tfjax.models.gpt.GPT; None: no constraint.
  """

  config: TransformerConfig
  activation_sharding: Any = None

  def setup(self):
    cfg = self.config
    # N(0, d^-1/2), times sqrt(d) at the input: unit-variance embeddings (as tensor2tensor);
    # the same matrix, unscaled, makes the logits.
    self.token_embed = TokenEmbedding(
      cfg.vocab_size,
      cfg.d_model,
      embedding_init=nn.initializers.normal(stddev=cfg.d_model**-0.5),
      dtype=jnp.dtype(cfg.dtype),
    )
    self.encoder = Encoder(cfg, self.token_embed, self.activation_sharding)
    self.decoder = Decoder(cfg, self.token_embed, self.activation_sharding)

  def encode(self, inputs: Array, **kwargs: Any) -> Array:
    """Source tokens [b, s] (0 = padding) -> encoder output [b, s, d_model]; `kwargs` as
    `Encoder.__call__`'s (`segmentation`, `positions`, `deterministic`)."""
    return self.encoder(inputs, **kwargs)

  def decode(self, encoded: Array, inputs: Array, decoder_inputs: Array, **kwargs: Any) -> Array:
    """Target tokens shifted right [b, t] and the encoder output -> float32 logits [b, t, V];
    `kwargs` as `Decoder.__call__`'s (segment ids, `decoder_positions`, `deterministic`).

    With `config.decode`: one new token per row at its absolute `decoder_positions` [b, 1],
    keys and values of the earlier ones in the "cache" collection.
    """
    return self.decoder(encoded, inputs, decoder_inputs, **kwargs)

  def __call__(
    self,
    inputs: Array,
    decoder_inputs: Array,
    *,
    inputs_segmentation: Array | None = None,
    inputs_positions: Array | None = None,
    decoder_segmentation: Array | None = None,
    decoder_positions: Array | None = None,
    deterministic: bool = True,
  ) -> Array:
    """Teacher-forced logits [b, t, V] of the target given the source."""
    encoded = self.encode(
      inputs,
      segmentation=inputs_segmentation,
      positions=inputs_positions,
      deterministic=deterministic,
    )
    return self.decode(
      encoded,
      inputs,
      decoder_inputs,
      inputs_segmentation=inputs_segmentation,
      decoder_segmentation=decoder_segmentation,
      decoder_positions=decoder_positions,
      deterministic=deterministic,
    )
