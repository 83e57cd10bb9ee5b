"""BERT: a bidirectional post-LN Transformer encoder and its task heads (Devlin et al. 2018).

tokens [b, t] -> token + learned position + segment embeddings -> LayerNorm -> dropout ->
num_layers x post-LN TransformerLayer (self-attention over the real tokens + exact-GELU MLP) ->
last_hidden_state [b, t, d]; pooled [b, d] = tanh(dense(hidden state of [CLS], position 0)).

Heads: masked LM (dense + GELU + LayerNorm, then the transposed token embedding plus a bias:
tied decoder, §3.1 Task #1) and next sentence prediction on `pooled` (§3.1 Task #2), and the
fine-tuning heads of §4 (sequence, token, span and multiple-choice classification). Parameter
names follow the spec the HF weight import (`tfjax.hub.bert`) maps onto.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from tfjax.models.config import ModelConfig
from tfjax.nn import partitioning
from tfjax.nn.blocks import TransformerLayer
from tfjax.nn.embedding import LearnedPositionEmbedding, TokenEmbedding
from tfjax.nn.feedforward import activation_fn
from tfjax.nn.lora import LoRA
from tfjax.nn.stack import apply_layers, constrain, layer_values

Array = jax.Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class BertConfig(ModelConfig):
  """Hyper-parameters of a BERT; the defaults are BERT's (and HF BertConfig's) own."""

  vocab_size: int
  max_len: int = 512  # size of the learned position table (HF max_position_embeddings)
  type_vocab_size: int = 2  # segments A and B
  num_layers: int
  num_heads: int
  d_model: int
  d_ff: int
  activation: str = "gelu"  # exact erf GELU, as Google's BERT
  dropout_rate: float = 0.1  # embeddings, residual branches, classifier inputs
  attention_dropout_rate: float = 0.1
  layer_norm_epsilon: float = 1e-12
  init_std: float = 0.02  # N(0, 0.02) for kernels and embeddings (HF initializer_range)
  pad_id: int = 0  # the default attention mask is tokens != pad_id
  dtype: str = "float32"  # compute dtype; parameters stay float32
  remat_policy: str = "none"  # activation rematerialisation of each layer: see REMAT_POLICIES
  scan_layers: bool = False  # one nn.scan over stacked layer params: fast compiles of deep models
  # Low-rank adapters on the layers' projections; fine-tuning tasks set it from config.lora.
  lora: LoRA | None = None

  def __post_init__(self):
    self.check(
      "vocab_size", "max_len", "type_vocab_size", "num_layers", "num_heads", "d_model", "d_ff"
    )
    if not 0 <= self.pad_id < self.vocab_size:
      raise ValueError(
        f"model.pad_id={self.pad_id} is not a token id of the vocabulary "
        f"(vocab_size={self.vocab_size}); set it to the tokenizer's [PAD] id"
      )


# Logical axes of BERT's parameters: the blocks', then the segment table and the heads. The type
# table is tiny and, like the task heads' class axis, named by an axis no sharding rule maps, so
# it stays replicated.
PARAM_AXES = (
  (r"segment_embed/embedding", ("segment", "embed")),
  (r"(pooler|mlm_transform)/kernel", ("embed", "embed")),  # mesh_spec shards one of the two
  (r"(pooler|mlm_transform)/bias", ("embed",)),
  (r"mlm_output_bias", ("vocab",)),
  (r"(nsp|classifier|qa_outputs)/kernel", ("embed", "classes")),
  (r"(nsp|classifier|qa_outputs)/bias", ("classes",)),
  *partitioning.PARAM_AXES,
)


@flax.struct.dataclass
class BertOutput:
  """The encoder's outputs, float32. `hidden_states`: the embeddings' output, then each
  layer's ([num_layers + 1] x [b, t, d]), when asked for; else None."""

  last_hidden_state: Array  # [b, t, d]
  pooled: Array  # [b, d]
  hidden_states: tuple[Array, ...] | None = None


class BertEmbeddings(nn.Module):
  """LayerNorm(token + position + segment embedding), then dropout (Devlin et al. §3, Fig. 2)."""

  config: BertConfig

  def setup(self):
    cfg = self.config
    init = nn.initializers.normal(stddev=cfg.init_std)
    dtype = jnp.dtype(cfg.dtype)
    self.token_embed = TokenEmbedding(cfg.vocab_size, cfg.d_model, embedding_init=init, dtype=dtype)
    self.position_embed = LearnedPositionEmbedding(
      cfg.max_len, cfg.d_model, embedding_init=init, dtype=dtype
    )
    self.segment_embed = nn.Embed(
      cfg.type_vocab_size, cfg.d_model, embedding_init=init, dtype=dtype
    )
    self.embed_norm = nn.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=dtype)
    self.dropout = nn.Dropout(cfg.dropout_rate)

  def __call__(self, tokens: Array, segment_ids: Array, deterministic: bool) -> Array:
    positions = jnp.arange(tokens.shape[1])[None]  # [1, t]
    x = self.token_embed(tokens) + self.position_embed(positions) + self.segment_embed(segment_ids)
    return self.dropout(self.embed_norm(x), deterministic=deterministic)  # [b, t, d]

  def attend(self, x: Array) -> Array:
    """x @ E^T over the token table, float32 [..., vocab]: the tied MLM decoder."""
    return self.token_embed.attend(x)


class BertModel(nn.Module):
  """The encoder and pooler. `activation_sharding` pins the activations between layers to the
  batch split, as in `tfjax.models.gpt.GPT` (None: no constraint)."""

  config: BertConfig
  activation_sharding: Any = None

  def setup(self):
    self.embeddings = BertEmbeddings(self.config)

  @nn.compact
  def __call__(
    self,
    tokens: Array,
    segment_ids: Array | None = None,
    attention_mask: Array | None = None,
    *,
    deterministic: bool = True,
    return_hidden_states: bool = False,
  ) -> BertOutput:
    cfg = self.config
    length = tokens.shape[1]
    if length > cfg.max_len:
      raise ValueError(
        f"sequence length {length} is longer than the position table (max_len={cfg.max_len}); "
        "shorten the input or raise model.max_len"
      )
    if segment_ids is None:
      segment_ids = jnp.zeros_like(tokens)
    if attention_mask is None:
      attention_mask = tokens != cfg.pad_id
    # Keys only, as Google's BERT and HF: padded query rows still get (ignored) values.
    mask = attention_mask.astype(jnp.bool_)[:, None, None, :]  # [b, 1, 1, k]
    dtype = jnp.dtype(cfg.dtype)
    init = nn.initializers.normal(stddev=cfg.init_std)

    x = self._constrain(self.embeddings(tokens, segment_ids, deterministic))
    layer = lambda name: TransformerLayer(
      num_heads=cfg.num_heads,
      d_ff=cfg.d_ff,
      activation=cfg.activation,
      pre_norm=False,
      dropout_rate=cfg.dropout_rate,
      attention_dropout_rate=cfg.attention_dropout_rate,
      layer_norm_epsilon=cfg.layer_norm_epsilon,
      kernel_init=init,
      dtype=dtype,
      lora=cfg.lora,
      name=name,
    )
    embedded = x
    x, layer_outputs = apply_layers(
      layer,
      x,
      {"mask": mask},
      num_layers=cfg.num_layers,
      deterministic=deterministic,
      scan=cfg.scan_layers,
      remat_policy=cfg.remat_policy,
      activation_sharding=self.activation_sharding,
      keep_outputs=return_hidden_states,
    )

    pooled = nn.Dense(cfg.d_model, kernel_init=init, dtype=dtype, name="pooler")(x[:, 0])
    f32 = lambda a: a.astype(jnp.float32)
    return BertOutput(
      last_hidden_state=f32(x),
      pooled=f32(jnp.tanh(pooled)),  # [b, d]
      hidden_states=tuple(map(f32, (embedded, *layer_outputs))) if return_hidden_states else None,
    )

  def attend(self, x: Array) -> Array:
    """The tied MLM decoder: x @ token_embed^T, float32 [..., vocab]."""
    return self.embeddings.attend(x)

  def _constrain(self, x: Array) -> Array:
    return constrain(self.activation_sharding, x)


class _BertHead(nn.Module):
  """A BertModel named "bert" plus a task layer: `head(out, deterministic, leading)` maps the
  encoder's outputs to the task's logits (float32). Inputs are [..., t]: any leading axes
  (`leading`, e.g. [b, choices]) are one batch axis for the encoder."""

  config: BertConfig
  activation_sharding: Any = None

  @nn.compact
  def __call__(
    self,
    tokens: Array,
    segment_ids: Array | None = None,
    attention_mask: Array | None = None,
    *,
    deterministic: bool = True,
  ) -> Any:
    leading = tokens.shape[:-1]
    flat = lambda a: None if a is None else a.reshape(-1, a.shape[-1])  # [b', t]
    out = self._bert()(
      flat(tokens), flat(segment_ids), flat(attention_mask), deterministic=deterministic
    )
    return self.head(out, deterministic, leading)

  def head(self, out: BertOutput, deterministic: bool, leading: tuple[int, ...]) -> Any:
    raise NotImplementedError

  def _bert(self) -> BertModel:
    return BertModel(self.config, self.activation_sharding, name="bert")

  def _dense(self, features: int, name: str) -> nn.Dense:
    return nn.Dense(
      features,
      kernel_init=nn.initializers.normal(stddev=self.config.init_std),
      dtype=jnp.dtype(self.config.dtype),
      name=name,
    )

  def _dropout(self, x: Array, deterministic: bool) -> Array:
    return nn.Dropout(self.config.dropout_rate)(x, deterministic=deterministic)


class BertForPreTraining(_BertHead):
  """Masked LM and next sentence prediction heads (Devlin et al. §3.1, App. A.1).

  Returns (mlm_logits [b, P, V] at `masked_positions` [b, P], or [b, t, V] without them;
  nsp_logits [b, 2], 0 = IsNext, 1 = NotNext), float32.
  """

  @nn.compact
  def __call__(
    self,
    tokens: Array,
    segment_ids: Array | None = None,
    attention_mask: Array | None = None,
    *,
    masked_positions: Array | None = None,
    deterministic: bool = True,
  ) -> tuple[Array, Array]:
    cfg = self.config
    bert = self._bert()
    out = bert(tokens, segment_ids, attention_mask, deterministic=deterministic)
    x = out.last_hidden_state.astype(jnp.dtype(cfg.dtype))
    if masked_positions is not None:
      # Gather before the transform, as Google's BERT: only P of the t positions pay for it.
      x = jnp.take_along_axis(x, masked_positions[..., None], axis=1)  # [b, P, d]
    x = activation_fn(cfg.activation)(self._dense(cfg.d_model, "mlm_transform")(x))
    x = nn.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=x.dtype, name="mlm_norm")(x)
    bias = self.param("mlm_output_bias", nn.initializers.zeros, (cfg.vocab_size,), jnp.float32)
    mlm_logits = bert.attend(x) + bias  # [b, P | t, V]
    nsp_logits = self._dense(2, "nsp")(out.pooled)  # [b, 2]
    return mlm_logits.astype(jnp.float32), nsp_logits.astype(jnp.float32)


class BertForSequenceClassification(_BertHead):
  """logits [b, num_labels] from dropout(pooled) (§4.1); sentence pairs are the same module,
  told apart by their segment ids."""

  num_labels: int = 2

  def head(self, out: BertOutput, deterministic: bool, leading: tuple[int, ...]) -> Array:
    pooled = self._dropout(out.pooled, deterministic)
    logits = self._dense(self.num_labels, "classifier")(pooled).astype(jnp.float32)
    return logits.reshape(*leading, self.num_labels)


class BertForTokenClassification(_BertHead):
  """logits [b, t, num_labels] from every dropped-out hidden state (§4.3, NER)."""

  num_labels: int = 2

  def head(self, out: BertOutput, deterministic: bool, leading: tuple[int, ...]) -> Array:
    x = self._dropout(out.last_hidden_state, deterministic)
    logits = self._dense(self.num_labels, "classifier")(x).astype(jnp.float32)
    return logits.reshape(*leading, -1, self.num_labels)


class BertForQuestionAnswering(_BertHead):
  """Span start and end logits, each [b, t], from one dense layer on the hidden states (§4.2)."""

  def head(self, out: BertOutput, deterministic: bool, leading: tuple[int, ...]) -> Any:
    logits = self._dense(2, "qa_outputs")(out.last_hidden_state).astype(jnp.float32)
    logits = logits.reshape(*leading, -1, 2)
    return logits[..., 0], logits[..., 1]  # [b, t] each


class BertForMultipleChoice(_BertHead):
  """Inputs [b, choices, t]: each choice encoded alone, one score per choice from its pooled
  output -> logits [b, choices] (§4.4, SWAG)."""

  def head(self, out: BertOutput, deterministic: bool, leading: tuple[int, ...]) -> Array:
    pooled = self._dropout(out.pooled, deterministic)  # [b * choices, d]
    scores = self._dense(1, "classifier")(pooled).astype(jnp.float32)
    return scores.reshape(leading)  # [b, choices]


def attention_weights(intermediates: Mapping[str, Any]) -> list[Array]:
  """Each layer's attention weights [b, h, q, k], in layer order, from the state of an apply
  with mutable=["intermediates"] (of BertModel or any head: the "bert" prefix is looked through).
  """
  tree = intermediates.get("intermediates", intermediates)
  return layer_values(tree.get("bert", tree), ("self_attention", "attention_weights"))


HEADS = {"model": BertModel, "pretraining": BertForPreTraining}
