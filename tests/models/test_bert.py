"""Tests for tfjax.models.bert: published sizes, a numpy forward reference, padding, the tied MLM
decoder, every head, attention weights, rematerialisation, sharding and config errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from tests.nn import numpy_reference as ref
from tfjax.models.bert import (
  HEADS,
  PARAM_AXES,
  BertConfig,
  BertForMultipleChoice,
  BertForPreTraining,
  BertForQuestionAnswering,
  BertForSequenceClassification,
  BertForTokenClassification,
  BertModel,
  attention_weights,
)
from tfjax.models.config import count_params
from tfjax.nn.partitioning import params_logical_axes
from tfjax.training import sharding

TINY = BertConfig(
  vocab_size=13,
  max_len=8,
  num_layers=2,
  num_heads=2,
  d_model=8,
  d_ff=16,
  dropout_rate=0.0,
  attention_dropout_rate=0.0,
)
LENGTHS = (6, 4, 2)  # real tokens per row; the rest is [PAD] = 0


def _batch(lengths=LENGTHS, length=6, seed=0):
  """(tokens, segment_ids, attention_mask) [b, length]: real tokens 1..V-1, then padding."""
  rng = np.random.default_rng(seed)
  real = np.arange(length)[None, :] < np.asarray(lengths)[:, None]
  tokens = np.where(real, rng.integers(1, TINY.vocab_size, real.shape), TINY.pad_id)
  segments = np.where(
    real & (np.arange(length)[None, :] >= np.asarray(lengths)[:, None] // 2), 1, 0
  )
  return tuple(jnp.asarray(a, jnp.int32) for a in (tokens, segments, real))


def _params(module, *args, seed=0):
  """Random parameters drawn with numpy (see `ref.random_params`): all off their init values."""
  return ref.random_params(module, *args, seed=seed)


def _reference(p, tokens, segments, mask, config=TINY):
  return ref.bert_encoder(
    p,
    tokens,
    segments,
    mask,
    num_heads=config.num_heads,
    activation=config.activation,
    eps=config.layer_norm_epsilon,
  )


# --- published parameter counts ---------------------------------------------------------------

BASE = BertConfig(vocab_size=30_522, num_layers=12, num_heads=12, d_model=768, d_ff=3072)
LARGE = BASE.replace(num_layers=24, num_heads=16, d_model=1024, d_ff=4096)


@pytest.mark.parametrize(
  "config, head, expected",
  [
    (BASE, "model", 109_482_240),  # HF BertModel (bert-base-uncased)
    (BASE, "pretraining", 110_106_428),  # HF BertForPreTraining: + MLM and NSP heads
    (LARGE, "model", 335_141_888),
    (LARGE, "pretraining", 336_226_108),
  ],
  ids=["base", "base_pretraining", "large", "large_pretraining"],
)
def test_count_params_matches_published_sizes(config, head, expected):
  assert count_params(HEADS[head](config), (1, 1)) == expected


# --- the encoder ------------------------------------------------------------------------------


def test_forward_matches_naive_numpy():
  tokens, segments, mask = _batch()
  params = _params(BertModel(TINY), tokens)
  out = BertModel(TINY).apply(params, tokens, segments, mask, return_hidden_states=True)
  chex.assert_shape(out.last_hidden_state, (3, 6, TINY.d_model))
  chex.assert_shape(out.pooled, (3, TINY.d_model))
  assert out.last_hidden_state.dtype == out.pooled.dtype == jnp.float32

  states, pooled = _reference(ref.as_np(params["params"]), tokens, segments, mask)
  # Padded query rows are computed too (only keys are masked), so every position is compared.
  chex.assert_trees_all_close(out.hidden_states, tuple(states), rtol=1e-4, atol=1e-4)
  chex.assert_trees_all_close(out.pooled, pooled, rtol=1e-4, atol=1e-4)


def test_default_segments_are_zero_and_default_mask_is_tokens_not_pad():
  tokens, _, mask = _batch()
  model = BertModel(TINY)
  params = _params(model, tokens)
  explicit = model.apply(params, tokens, jnp.zeros_like(tokens), mask)
  chex.assert_trees_all_equal(model.apply(params, tokens), explicit)


def test_hidden_states_are_embeddings_then_each_layer_and_last_is_last_hidden_state():
  tokens, segments, mask = _batch()
  model = BertModel(TINY)
  params = _params(model, tokens)
  out = model.apply(params, tokens, segments, mask, return_hidden_states=True)
  assert len(out.hidden_states) == TINY.num_layers + 1
  chex.assert_trees_all_equal(out.hidden_states[-1], out.last_hidden_state)
  assert model.apply(params, tokens, segments, mask).hidden_states is None


def test_real_tokens_ignore_padding_length_and_padded_token_ids():
  tokens, segments, mask = _batch()
  model = BertModel(TINY)
  params = _params(model, tokens)
  padded = model.apply(params, tokens, segments, mask)
  for row, n in enumerate(LENGTHS):
    alone = model.apply(params, tokens[row : row + 1, :n], segments[row : row + 1, :n])
    chex.assert_trees_all_close(
      padded.last_hidden_state[row, :n], alone.last_hidden_state[0], rtol=1e-5, atol=1e-5
    )
    chex.assert_trees_all_close(padded.pooled[row], alone.pooled[0], rtol=1e-5, atol=1e-5)
  # Other ids (and segments) under the mask change nothing for the real tokens.
  noise = jnp.asarray(np.random.default_rng(1).integers(1, TINY.vocab_size, tokens.shape))
  other = model.apply(params, jnp.where(mask, tokens, noise), jnp.where(mask, segments, 1), mask)
  for row, n in enumerate(LENGTHS):
    chex.assert_trees_all_close(
      other.last_hidden_state[row, :n], padded.last_hidden_state[row, :n], rtol=1e-5, atol=1e-5
    )


def test_attention_weights_of_padded_keys_are_zero_and_rows_sum_to_one():
  tokens, segments, mask = _batch()
  for model in (BertModel(TINY), BertForSequenceClassification(TINY, num_labels=3)):
    params = _params(model, tokens)
    _, state = model.apply(params, tokens, segments, mask, mutable=["intermediates"])
    weights = attention_weights(state)
    assert len(weights) == TINY.num_layers
    for w in weights:
      chex.assert_shape(w, (3, TINY.num_heads, 6, 6))
      keys_padded = ~np.asarray(mask, bool)[:, None, None, :]  # [b, 1, 1, k]
      np.testing.assert_array_equal(np.where(keys_padded, w, 0.0), 0.0)
      np.testing.assert_allclose(np.asarray(w).sum(-1), 1.0, rtol=1e-6)  # padded queries too


def test_attention_weights_without_intermediates_is_a_clear_error():
  with pytest.raises(ValueError, match=r"mutable=\['intermediates'\]"):
    attention_weights({})


# --- pre-training heads -----------------------------------------------------------------------


def test_pretraining_logits_match_naive_numpy():
  tokens, segments, mask = _batch()
  model = BertForPreTraining(TINY)
  params = _params(model, tokens)
  mlm, nsp = model.apply(params, tokens, segments, mask)
  chex.assert_shape(mlm, (3, 6, TINY.vocab_size))
  chex.assert_shape(nsp, (3, 2))
  assert mlm.dtype == nsp.dtype == jnp.float32

  p = ref.as_np(params["params"])
  states, pooled = _reference(p["bert"], tokens, segments, mask)
  expected = ref.bert_mlm_logits(p, states[-1], activation=TINY.activation, eps=1e-12)
  chex.assert_trees_all_close(mlm, expected, rtol=1e-4, atol=1e-4)
  chex.assert_trees_all_close(nsp, ref.dense(pooled, p["nsp"]), rtol=1e-4, atol=1e-4)


def test_masked_positions_gather_equals_full_sequence_logits_at_those_positions():
  tokens, segments, mask = _batch()
  model = BertForPreTraining(TINY)
  params = _params(model, tokens)
  full, nsp = model.apply(params, tokens, segments, mask)
  positions = jnp.asarray([[0, 3, 5], [1, 1, 2], [0, 0, 0]], jnp.int32)  # [b, P], repeats ok
  gathered, nsp_gathered = model.apply(params, tokens, segments, mask, masked_positions=positions)
  chex.assert_shape(gathered, (3, 3, TINY.vocab_size))
  expected = np.take_along_axis(np.asarray(full), np.asarray(positions)[..., None], axis=1)
  chex.assert_trees_all_close(gathered, expected, rtol=1e-6, atol=1e-6)
  chex.assert_trees_all_equal(nsp_gathered, nsp)


def test_mlm_decoder_is_tied_to_the_token_embedding():
  tokens, segments, mask = _batch()
  model = BertForPreTraining(TINY)
  params = _params(model, tokens)
  assert set(params["params"]) == {"bert", "mlm_transform", "mlm_norm", "mlm_output_bias", "nsp"}
  chex.assert_shape(params["params"]["mlm_output_bias"], (TINY.vocab_size,))

  def loss(params):
    mlm, _ = model.apply(params, tokens, segments, mask, masked_positions=jnp.zeros((3, 1), int))
    return jax.nn.log_softmax(mlm).mean()

  grad = jax.jit(jax.grad(loss))(params)["params"]["bert"]["embeddings"]["token_embed"]["embedding"]
  unused = sorted(set(range(TINY.vocab_size)) - set(np.asarray(tokens).ravel().tolist()))
  assert unused, "the test batch should leave some token ids out"
  # A row no input token reads gets its gradient through the decoder alone.
  assert np.abs(np.asarray(grad)[unused]).sum(-1).min() > 0.0


# --- fine-tuning heads ------------------------------------------------------------------------


def test_every_head_has_its_output_shape_and_matches_its_dense_layer_on_the_encoder():
  tokens, segments, mask = _batch()
  b, t, d = 3, 6, TINY.d_model

  def encoder(params):
    return BertModel(TINY).apply({"params": params["params"]["bert"]}, tokens, segments, mask)

  def head(params, name, x):
    return ref.dense(np.asarray(x, np.float64), ref.as_np(params["params"][name]))

  model = BertForSequenceClassification(TINY, num_labels=3)
  params = _params(model, tokens)
  logits = model.apply(params, tokens, segments, mask)
  chex.assert_shape(params["params"]["classifier"]["kernel"], (d, 3))
  chex.assert_shape(logits, (b, 3))
  chex.assert_trees_all_close(logits, head(params, "classifier", encoder(params).pooled), atol=1e-5)

  model = BertForTokenClassification(TINY, num_labels=5)
  params = _params(model, tokens)
  logits = model.apply(params, tokens, segments, mask)
  chex.assert_shape(logits, (b, t, 5))
  expected = head(params, "classifier", encoder(params).last_hidden_state)
  chex.assert_trees_all_close(logits, expected, atol=1e-5)

  model = BertForQuestionAnswering(TINY)
  params = _params(model, tokens)
  start, end = model.apply(params, tokens, segments, mask)
  chex.assert_shape([start, end], (b, t))
  expected = head(params, "qa_outputs", encoder(params).last_hidden_state)
  chex.assert_trees_all_close((start, end), (expected[..., 0], expected[..., 1]), atol=1e-5)

  for logits in (start, end):
    assert logits.dtype == jnp.float32


def test_multiple_choice_scores_each_choice_alone():
  tokens, segments, mask = (a.reshape(1, 3, 6) for a in _batch())  # 1 question, 3 choices
  model = BertForMultipleChoice(TINY)
  params = _params(model, tokens)
  chex.assert_shape(params["params"]["classifier"]["kernel"], (TINY.d_model, 1))
  logits = model.apply(params, tokens, segments, mask)
  chex.assert_shape(logits, (1, 3))
  p = ref.as_np(params["params"])
  for c in range(3):
    _, pooled = _reference(p["bert"], tokens[:, c], segments[:, c], mask[:, c])
    expected = ref.dense(pooled, p["classifier"])[:, 0]
    chex.assert_trees_all_close(logits[:, c], expected, rtol=1e-4, atol=1e-4)


def test_dropout_is_active_only_when_not_deterministic():
  config = TINY.replace(dropout_rate=0.1, attention_dropout_rate=0.1)
  tokens, segments, mask = _batch()
  model = BertForSequenceClassification(config, num_labels=3)
  params = _params(model, tokens)

  def run(seed, deterministic):
    rngs = {"dropout": jax.random.key(seed)}
    return model.apply(params, tokens, segments, mask, deterministic=deterministic, rngs=rngs)

  default = model.apply(params, tokens, segments, mask)
  chex.assert_trees_all_equal(run(1, True), default)
  chex.assert_trees_all_equal(run(1, False), run(1, False))
  assert not np.allclose(run(1, False), run(2, False))
  assert not np.allclose(run(1, False), default)


# --- initialisation ---------------------------------------------------------------------------


def test_init_is_normal_002_with_zero_biases_and_unit_norm_scales():
  config = BertConfig(vocab_size=512, max_len=16, num_layers=1, num_heads=4, d_model=128, d_ff=512)
  tokens = jnp.ones((1, 4), jnp.int32)
  params = jax.jit(BertForPreTraining(config).init)(jax.random.key(0), tokens)["params"]

  def check_std(array, std=0.02):
    array = np.asarray(array, np.float64)
    assert abs(array.mean()) < 0.05 * std
    assert abs(array.std() - std) < 0.03 * std  # >= 49k draws: relative error ~0.3%

  bert = params["bert"]
  check_std(bert["embeddings"]["token_embed"]["embedding"])
  check_std(bert["layer_0"]["self_attention"]["qkv"]["kernel"])
  check_std(bert["layer_0"]["self_attention"]["out"]["kernel"])  # no depth scaling in BERT
  check_std(bert["layer_0"]["mlp"]["output"]["kernel"])
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    name = jax.tree_util.keystr(path)
    if "bias" in name:
      np.testing.assert_array_equal(leaf, 0.0, err_msg=name)
    if "scale" in name:
      np.testing.assert_array_equal(leaf, 1.0, err_msg=name)


# --- sharding ---------------------------------------------------------------------------------


class FakeMesh:
  shape = {"data": 2, "fsdp": 4, "tensor": 2}


def test_every_bert_parameter_has_logical_axes_and_a_sharding():
  mesh = sharding.make_mesh({"data": -1}, jax.devices()[:1])
  tokens = jax.ShapeDtypeStruct((2, 6), jnp.int32)
  choices = jax.ShapeDtypeStruct((2, 2, 6), jnp.int32)
  heads = [
    (BertForPreTraining(TINY), tokens),
    (BertForSequenceClassification(TINY, num_labels=3), tokens),
    (BertForTokenClassification(TINY, num_labels=3), tokens),
    (BertForQuestionAnswering(TINY), tokens),
    (BertForMultipleChoice(TINY), choices),
  ]
  for model, inputs in heads:
    shapes = jax.eval_shape(model.init, jax.random.key(0), inputs)
    shardings = sharding.tree_shardings(shapes, mesh, sharding.DEFAULT_RULES, PARAM_AXES)
    assert all(isinstance(s, NamedSharding) for s in jax.tree.leaves(shardings))
    params = jax.device_put(_params(model, inputs), shardings)
    assert jax.tree.structure(params) == jax.tree.structure(shapes)

  shapes = jax.eval_shape(BertForPreTraining(TINY).init, jax.random.key(0), tokens)["params"]
  axes = params_logical_axes(shapes, PARAM_AXES)
  assert axes["bert"]["embeddings"]["segment_embed"]["embedding"] == ("segment", "embed")
  assert axes["bert"]["embeddings"]["embed_norm"]["scale"] == ("embed",)
  assert axes["mlm_output_bias"] == ("vocab",)
  assert axes["nsp"]["kernel"] == ("embed", "classes")
  spec = lambda path_axes, shape: sharding.mesh_spec(
    path_axes, shape, FakeMesh, sharding.DEFAULT_RULES
  )
  assert spec(axes["bert"]["pooler"]["kernel"], (8, 8)) == PartitionSpec("fsdp", None)
  assert spec(axes["mlm_transform"]["kernel"], (8, 8)) == PartitionSpec("fsdp", None)
  assert spec(axes["nsp"]["kernel"], (8, 2)) == PartitionSpec("fsdp", None)  # classes replicated
  assert spec(axes["mlm_output_bias"], (16,)) == PartitionSpec("tensor")  # as the token table
  assert spec(("segment", "embed"), (2, 8)) == PartitionSpec(None, "fsdp")


# --- configuration errors ---------------------------------------------------------------------


def test_d_model_not_divisible_by_heads_is_a_clear_error():
  with pytest.raises(ValueError, match="d_model=10 is not divisible by num_heads=4"):
    TINY.replace(d_model=10, num_heads=4)


def test_unknown_config_key_is_a_clear_error():
  fields = dict(vocab_size=13, num_layers=2, num_heads=2, d_model=8, d_ff=16)
  assert BertConfig.from_config(fields) == BertConfig(**fields)
  with pytest.raises(ValueError, match=r"unknown model config keys \['num_layer'\]"):
    BertConfig.from_config({**fields, "num_layer": 3})


@pytest.mark.parametrize(
  "changes, message",
  [
    ({"remat_policy": "some"}, r"remat_policy='some' is unknown; choose one of"),
    ({"activation": "swish"}, r"activation='swish' is unknown"),
    ({"pad_id": 13}, r"pad_id=13 is not a token id .*vocab_size=13"),
    ({"type_vocab_size": 0}, r"type_vocab_size=0 must be positive"),
    ({"dropout_rate": 1.0}, r"dropout_rate=1.0 must be in \[0, 1\)"),
  ],
)
def test_invalid_config_values_are_clear_errors(changes, message):
  with pytest.raises(ValueError, match=message):
    TINY.replace(**changes)


def test_sequence_longer_than_max_len_is_a_clear_error():
  tokens = jnp.ones((1, 9), jnp.int32)
  params = _params(BertModel(TINY), tokens[:, :8])
  with pytest.raises(ValueError, match=r"sequence length 9 is longer .*max_len=8"):
    BertModel(TINY).apply(params, tokens)
