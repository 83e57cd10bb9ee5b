"""GPT-1 and GPT-2: decoder-only causal language models (Radford et al. 2018, 2019).

tokens [b, t] -> token + learned position embeddings -> dropout -> num_layers x
TransformerLayer (causal self-attention + MLP) -> (pre-LN: final LayerNorm) -> logits [b, t, V]
through the transposed token embedding (tied output, as HF's GPT-2 and OpenAIGPT).

`GPTModel` is the body (tokens -> final hidden states [b, t, d]) a fine-tuning head attaches
to; `GPT` is the language model: the body plus the tied output projection. Both keep the same
parameter names (the body shares the LM's scope), so one checkpoint serves either.

The layers are those of `tfjax.nn.stack.apply_layers`: `num_layers` submodules `layer_{i}`, or
(`scan_layers=True`) one `nn.scan` over a submodule `layers` whose parameters (and KV cache)
have a leading [num_layers] axis. `tfjax.nn.stack.stack_layers` / `unstack_layers`
convert between the two layouts.

Packed rows (several examples laid end to end, as prompt -> response fine-tuning batches them)
pass `segment_ids` and per-example `positions`: each example then sees only itself.
"""

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tfjax.models.config import ModelConfig
from tfjax.nn import partitioning
from tfjax.nn.attention import causal_mask, combine_masks, segment_mask
from tfjax.nn.blocks import TransformerLayer
from tfjax.nn.embedding import LearnedPositionEmbedding, TokenEmbedding
from tfjax.nn.lora import LoRA
from tfjax.nn.stack import apply_layers, constrain

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
  # Low-rank adapters on the layers' projections; fine-tuning tasks set it from config.lora.
  lora: LoRA | None = None

  def __post_init__(self):
    self.check("vocab_size", "max_len", "num_layers", "num_heads", "d_model", "d_ff")


def _init(config: GPTConfig) -> nn.initializers.Initializer:
  return nn.initializers.normal(stddev=config.init_std)  # N(0, 0.02) (GPT-1 §4.1)


def token_embedding(config: GPTConfig) -> TokenEmbedding:
  return TokenEmbedding(
    config.vocab_size, config.d_model, embedding_init=_init(config), dtype=jnp.dtype(config.dtype)
  )


# Logical axes of GPT's parameters: the blocks', and the untied output head.
PARAM_AXES = ((r"lm_head/kernel", ("embed", "vocab")), *partitioning.PARAM_AXES)


class GPTModel(nn.Module):
  """The body: tokens [b, t] -> hidden states [b, t, d_model] (after the final LayerNorm of a
  pre-LN stack), in the compute dtype.

  `token_embed` is the owner's table (the LM ties its output projection to it).
  `activation_sharding` (a `jax.sharding.Sharding` of the batch axis, e.g. over data x fsdp)
  pins the activations between layers to the batch split. Without it XLA may follow the
  weights' FSDP sharding into the activations and compute every layer for the whole global
  batch on every device. None (one device, shard_map, pmap): no constraint.
  """

  config: GPTConfig
  token_embed: TokenEmbedding
  activation_sharding: Any = None

  @nn.compact
  def __call__(
    self,
    tokens: Array,
    *,
    positions: Array | None = None,
    segment_ids: Array | None = None,
    deterministic: bool = True,
  ) -> Array:
    """`segment_ids` [b, t] (1, 2, ... per example, 0 = padding) mark packed rows: attention is
    then causal and inside each example, and `positions` restart at 0 for each."""
    cfg = self.config
    batch, length = tokens.shape
    if length > cfg.max_len:
      raise ValueError(
        f"sequence length {length} is longer than the position table (max_len={cfg.max_len}); "
        "shorten the input or raise model.max_len"
      )
    decoding = cfg.decode and not self.is_initializing()
    if positions is None:
      if decoding:
        raise ValueError("decode=True needs the absolute `positions` [batch, length] of the tokens")
      if segment_ids is not None:
        raise ValueError("packed rows (segment_ids) need each example's own `positions` [b, t]")
      positions = jnp.broadcast_to(jnp.arange(length), (batch, length))
    if decoding and segment_ids is not None:
      raise ValueError("decode=True reads one sequence per row; pass segment_ids=None")
    dtype = jnp.dtype(cfg.dtype)
    init = _init(cfg)
    out_std = cfg.init_std / math.sqrt(2 * cfg.num_layers) if cfg.scale_residual_init else None

    x = self.token_embed(tokens) + LearnedPositionEmbedding(
      cfg.max_len, cfg.d_model, embedding_init=init, dtype=dtype, name="position_embed"
    )(positions)  # [b, t, d_model]
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
    x = constrain(self.activation_sharding, x)

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
      lora=cfg.lora,
      name=name,
    )
    # When decoding, each attention layer builds its mask from the cache and `positions`.
    mask = None
    if not decoding:
      same = None if segment_ids is None else segment_mask(segment_ids, segment_ids)
      mask = combine_masks(causal_mask(length), same)  # [1 or b, 1, t, t]
    x, _ = apply_layers(
      layer,
      x,
      {"mask": mask, "positions": positions},
      num_layers=cfg.num_layers,
      deterministic=deterministic,
      scan=cfg.scan_layers,
      remat_policy=cfg.remat_policy,
      activation_sharding=self.activation_sharding,
    )
    if cfg.pre_norm:
      x = nn.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=dtype, name="final_norm")(x)
    return x


class GPT(nn.Module):
  """Causal language model: GPTModel, then logits [b, t, vocab_size] in float32 through the
  transposed token embedding (or an untied `lm_head`). `activation_sharding`: as GPTModel's."""

  config: GPTConfig
  activation_sharding: Any = None

  def setup(self):
    cfg = self.config
    self.token_embed = token_embedding(cfg)
    self.body = GPTModel(cfg, self.token_embed, self.activation_sharding)
    nn.share_scope(self, self.body)  # the body's parameters sit beside token_embed, unprefixed
    if not cfg.tie_embeddings:
      self.lm_head = nn.Dense(
        cfg.vocab_size,
        use_bias=False,
        kernel_init=_init(cfg),
        dtype=jnp.dtype(cfg.dtype),
        dot_general=_float32_dot_general,  # logits never rounded to bfloat16
      )

  def __call__(
    self,
    tokens: Array,
    *,
    positions: Array | None = None,
    segment_ids: Array | None = None,
    deterministic: bool = True,
  ) -> Array:
    x = self.hidden_states(
      tokens, positions=positions, segment_ids=segment_ids, deterministic=deterministic
    )
    return self.logits(x)

  def hidden_states(
    self,
    tokens: Array,
    *,
    positions: Array | None = None,
    segment_ids: Array | None = None,
    deterministic: bool = True,
  ) -> Array:
    """The body's final hidden states [b, t, d_model] (what a fine-tuning head reads);
    `segment_ids`: packed rows, as GPTModel's."""
    return self.body(
      tokens, positions=positions, segment_ids=segment_ids, deterministic=deterministic
    )

  def logits(self, x: Array) -> Array:
    """Next-token logits [b, t, vocab_size] in float32 of hidden states `x` [b, t, d_model]."""
    logits = self.token_embed.attend(x) if self.config.tie_embeddings else self.lm_head(x)
    return constrain(self.activation_sharding, logits.astype(jnp.float32))


# Logical axes of a fine-tuned GPT's parameters: the LM's under "gpt", and the task head.
FINE_TUNING_PARAM_AXES = (
  (r"classifier/kernel", ("embed", "classes")),
  (r"classifier/bias", ("classes",)),
  *PARAM_AXES,
)


class GPTForFineTuning(nn.Module):
  """A pre-trained GPT with GPT-1's task head (Radford et al. 2018, §3.2-3.3): a linear layer on
  the final hidden state of each sequence's extract token, after dropout.

  Inputs are `tokens` [b, c, t]: c sequences per example (`tfjax.data.gpt_inputs`: c = 1 for
  classification and entailment, 2 for similarity, one per answer for multiple choice) and
  `extract_positions` [b, c]. `combine` says how an example's c extract states become logits:
  "sum" adds them (similarity's two orders; c = 1 leaves one) and maps them to `num_outputs`
  logits [b, num_outputs] (classes, or 1 for a regression); "choices" scores each [b, c] with one
  logit (multiple choice: a softmax over the answers). Returns (task logits, LM logits [b, c, t,
  vocab_size] for the auxiliary loss, or None when `lm=False`), both float32.

  Parameters: the LM's under "gpt" (those of `GPT`, so a pre-trained run's fit as they are) and
  the head under "classifier" (N(0, init_std) kernel, zero bias, as the authors' code).
  """

  config: GPTConfig
  num_outputs: int = 2
  combine: str = "sum"
  classifier_dropout_rate: float = 0.1  # §4.1: "dropout to the classifier with a rate of 0.1"
  activation_sharding: Any = None

  def setup(self):
    if self.combine not in ("sum", "choices"):
      raise ValueError(f"combine={self.combine!r}: use 'sum' or 'choices'")
    self.gpt = GPT(self.config, self.activation_sharding)
    # Multiple choice: one mask per example, shared by its answers (the authors' train.py).
    shared = (1,) if self.combine == "choices" else ()
    self.dropout = nn.Dropout(self.classifier_dropout_rate, broadcast_dims=shared)
    self.classifier = nn.Dense(
      self.num_outputs if self.combine == "sum" else 1,
      kernel_init=_init(self.config),
      dtype=jnp.dtype(self.config.dtype),
    )

  def __call__(
    self,
    tokens: Array,
    extract_positions: Array,
    *,
    deterministic: bool = True,
    lm: bool = True,
  ) -> tuple[Array, Array | None]:
    batch, choices, length = tokens.shape
    x = self.gpt.hidden_states(tokens.reshape(-1, length), deterministic=deterministic)
    # The extract token's state of every sequence: [b * c, d] -> [b, c, d].
    index = extract_positions.reshape(-1, 1, 1)
    extract = jnp.take_along_axis(x, index, axis=1).reshape(batch, choices, -1)
    if self.combine == "sum":
      extract = extract.sum(axis=1)  # [b, d]
    extract = self.dropout(extract, deterministic=deterministic)
    logits = self.classifier(extract).astype(jnp.float32)
    if self.combine == "choices":
      logits = logits[..., 0]  # [b, c]
    lm_logits = self.gpt.logits(x).reshape(batch, choices, length, -1) if lm else None
    return logits, lm_logits


_float32_dot_general = functools.partial(jax.lax.dot_general, preferred_element_type=jnp.float32)


def add_tokens(params: Any, num_new: int, rng: jax.Array, init_std: float = 0.02) -> dict:
  """`params` of a GPT whose vocabulary grows by `num_new` tokens at its end (GPT-1's start,
  delimiter and extract, §3.3): new embedding rows (and untied output columns) drawn as the
  others were, N(0, init_std); every pre-trained row unchanged. Use it with
  `config.replace(vocab_size=config.vocab_size + num_new)`."""
  if num_new < 0:
    raise ValueError(f"num_new={num_new} must be >= 0")
  embed_rng, head_rng = jax.random.split(rng)
  table = params["token_embed"]["embedding"]  # [V, d]
  rows = init_std * jax.random.normal(embed_rng, (num_new, table.shape[1]), table.dtype)
  grown = {**params, "token_embed": {"embedding": jnp.concatenate([table, rows])}}
  if "lm_head" in params:
    kernel = params["lm_head"]["kernel"]  # [d, V]
    columns = init_std * jax.random.normal(head_rng, (kernel.shape[0], num_new), kernel.dtype)
    grown["lm_head"] = {"kernel": jnp.concatenate([kernel, columns], axis=1)}
  return grown
