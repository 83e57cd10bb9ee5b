"""Tests for tfjax.nn.attention against naive numpy references (tests/nn/numpy_reference.py)."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from tests.nn import numpy_reference as ref
from tfjax.nn.attention import (
  MultiHeadAttention,
  causal_mask,
  combine_masks,
  dot_product_attention,
  padding_mask,
)

B, H, D_K, D_V = 2, 2, 3, 5
# Row 0 has one padded token at the end, row 1 two.
VALID = np.array([[True, True, True, False], [True, True, False, False]])


def _qkv(tq=4, tk=4, seed=0):
  rng = np.random.default_rng(seed)
  q = rng.normal(size=(B, tq, H, D_K)).astype(np.float32)
  k = rng.normal(size=(B, tk, H, D_K)).astype(np.float32)
  v = rng.normal(size=(B, tk, H, D_V)).astype(np.float32)
  return q, k, v


def _masks(kind):
  """(query length, key length, mask) for each mask kind under test."""
  if kind == "none":
    return 3, 5, None
  if kind == "padding":  # padded keys only, queries all valid: every row sees some key
    key_valid = np.array([[True, True, True, False, False], [True, True, True, True, False]])
    return 3, 5, padding_mask(jnp.ones((B, 3), bool), jnp.asarray(key_valid))
  if kind == "causal":
    return 4, 4, causal_mask(4)
  if kind == "combined":
    return 4, 4, combine_masks(causal_mask(4), padding_mask(VALID, VALID))
  raise AssertionError(kind)


# --- masks ------------------------------------------------------------------------------------


def test_causal_mask_is_lower_triangular():
  expected = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1]], bool)[None, None]
  mask = causal_mask(3)
  assert mask.dtype == jnp.bool_
  np.testing.assert_array_equal(mask, expected)


def test_padding_mask_is_outer_and_of_validity_flags():
  query_valid = np.array([[True, True, False]])
  key_valid = np.array([[True, False, True, False]])
  expected = np.array(
    [[[[1, 0, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]]]],
    bool,
  )
  mask = padding_mask(jnp.asarray(query_valid), jnp.asarray(key_valid))
  chex.assert_shape(mask, (1, 1, 3, 4))
  np.testing.assert_array_equal(mask, expected)


def test_combine_masks_is_logical_and_ignoring_none():
  a = jnp.array([[True, True], [False, True]])
  b = jnp.array([[True, False], [True, True]])
  np.testing.assert_array_equal(combine_masks(a, None, b), np.array([[1, 0], [0, 1]], bool))
  np.testing.assert_array_equal(combine_masks(None, a), a)
  assert combine_masks(None, None) is None
  assert combine_masks() is None


# --- dot-product attention --------------------------------------------------------------------


class DotProductAttentionTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
    ("no_mask", "none"), ("padding", "padding"), ("causal", "causal"), ("combined", "combined")
  )
  def test_matches_naive_softmax_attention(self, kind):
    tq, tk, mask = _masks(kind)
    q, k, v = _qkv(tq, tk)
    out, weights = self.variant(dot_product_attention)(q, k, v, mask)
    chex.assert_shape(out, (B, tq, H, D_V))  # d_v != d_k
    chex.assert_shape(weights, (B, H, tq, tk))
    ref_out, ref_weights = ref.attention(q, k, v, None if mask is None else np.asarray(mask))
    chex.assert_trees_all_close((out, weights), (ref_out, ref_weights), rtol=1e-5, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_fully_masked_query_rows_give_zero_weights_and_output_without_nan(self):
    q, k, v = _qkv()
    # Batch row 1: no key is valid at all; batch row 0: the padded query 3 sees nothing.
    key_valid = np.array([[True, True, True, True], [False, False, False, False]])
    mask = padding_mask(jnp.asarray(VALID), jnp.asarray(key_valid))
    out, weights = self.variant(dot_product_attention)(q, k, v, mask)
    chex.assert_tree_all_finite((out, weights))
    np.testing.assert_array_equal(weights[1], 0.0)
    np.testing.assert_array_equal(out[1], 0.0)
    np.testing.assert_array_equal(weights[0, :, 3], 0.0)
    np.testing.assert_array_equal(out[0, 3], 0.0)
    ref_out, ref_weights = ref.attention(q, k, v, np.asarray(mask))
    chex.assert_trees_all_close((out, weights), (ref_out, ref_weights), rtol=1e-5, atol=1e-6)

  @chex.variants(with_jit=True)
  def test_fully_masked_rows_have_finite_gradients_that_vanish_on_masked_queries(self):
    q, k, v = _qkv()
    key_valid = np.array([[True, True, True, True], [False, False, False, False]])
    mask = padding_mask(jnp.asarray(VALID), jnp.asarray(key_valid))
    cotangent = np.random.default_rng(1).normal(size=(B, 4, H, D_V)).astype(np.float32)
    loss = lambda q, k, v: jnp.sum(dot_product_attention(q, k, v, mask)[0] * cotangent)
    grads = self.variant(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)
    chex.assert_tree_all_finite(grads)
    dq, dk, dv = grads
    for g in (dq[1], dk[1], dv[1], dq[0, 3]):  # nothing flows through fully masked rows
      np.testing.assert_array_equal(g, 0.0)
    assert np.abs(dq[0, :3]).min() > 0.0  # ... while the visible rows do get gradients

  def test_weight_rows_sum_to_one_where_any_key_is_visible(self):
    q, k, v = _qkv()
    mask = combine_masks(causal_mask(4), padding_mask(jnp.asarray(VALID), jnp.asarray(VALID)))
    _, weights = dot_product_attention(q, k, v, mask)
    any_visible = np.broadcast_to(np.asarray(mask).any(-1), (B, H, 4))
    sums = np.asarray(weights).sum(-1)
    np.testing.assert_allclose(sums[any_visible], 1.0, rtol=1e-6)
    np.testing.assert_array_equal(sums[~any_visible], 0.0)
    assert (~any_visible).any()  # the case is exercised: padded queries see nothing


def test_attention_dropout_is_identity_when_deterministic():
  q, k, v = _qkv()
  expected = dot_product_attention(q, k, v, causal_mask(4))
  got = dot_product_attention(
    q, k, v, causal_mask(4), dropout_rate=0.5, dropout_rng=jax.random.key(0), deterministic=True
  )
  chex.assert_trees_all_equal(got, expected)


def test_attention_dropout_zeroes_about_the_rate_and_rescales_kept_weights():
  rate = 0.3
  rng = np.random.default_rng(0)
  q = rng.normal(size=(2, 16, 4, 3)).astype(np.float32)
  k = rng.normal(size=(2, 16, 4, 3)).astype(np.float32)
  v = rng.normal(size=(2, 16, 4, 5)).astype(np.float32)
  _, clean = dot_product_attention(q, k, v)  # all weights > 0
  drop = jax.jit(functools.partial(dot_product_attention, dropout_rate=rate, deterministic=False))
  out, weights = drop(q, k, v, dropout_rng=jax.random.key(1))
  weights, clean = np.asarray(weights), np.asarray(clean)
  dropped = weights == 0.0
  assert abs(dropped.mean() - rate) < 0.05  # 2048 draws: std of the fraction ~0.01
  np.testing.assert_allclose(weights[~dropped], clean[~dropped] / (1 - rate), rtol=1e-6)
  # The output is the dropped-out weights applied to the values.
  np.testing.assert_allclose(out, np.einsum("bhqk,bkhd->bqhd", weights, v), rtol=1e-5, atol=1e-6)
  # Reproducible from the rng; another rng drops other weights.
  chex.assert_trees_all_equal(drop(q, k, v, dropout_rng=jax.random.key(1)), (out, weights))
  assert not np.array_equal(drop(q, k, v, dropout_rng=jax.random.key(2))[1], weights)


def test_attention_dropout_without_rng_is_a_clear_error():
  q, k, v = _qkv()
  with pytest.raises(ValueError, match="dropout_rng"):
    dot_product_attention(q, k, v, dropout_rate=0.1, deterministic=False)


# --- multi-head attention ---------------------------------------------------------------------


def _x(shape, seed=1):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_multi_head_attention_output_shape():
  x, encoded = _x((2, 5, 8)), _x((2, 3, 6), seed=2)
  module = MultiHeadAttention(num_heads=2)
  chex.assert_shape(module.apply(ref.random_params(module, x), x), (2, 5, 8))
  chex.assert_shape(module.apply(ref.random_params(module, x, encoded), x, encoded), (2, 5, 8))
  module = MultiHeadAttention(num_heads=2, out_features=6)
  chex.assert_shape(module.apply(ref.random_params(module, x), x), (2, 5, 6))


def _param_shapes(module, *args):
  return jax.tree.map(jnp.shape, jax.eval_shape(module.init, jax.random.key(0), *args)["params"])


def test_multi_head_param_shapes_follow_d_k_and_d_v():
  x = _x((1, 3, 8))
  assert _param_shapes(MultiHeadAttention(num_heads=2, d_k=3, d_v=5), x) == {
    "qkv": {"kernel": (8, 2 * (2 * 3 + 5)), "bias": (2 * (2 * 3 + 5),)},
    "out": {"kernel": (2 * 5, 8), "bias": (8,)},
  }


def test_cross_attention_params_are_query_and_key_value():
  x, encoded = _x((1, 3, 8)), _x((1, 4, 6), seed=2)
  assert _param_shapes(MultiHeadAttention(num_heads=2, d_k=3, d_v=5), x, encoded) == {
    "query": {"kernel": (8, 2 * 3), "bias": (2 * 3,)},
    "key_value": {"kernel": (6, 2 * (3 + 5)), "bias": (2 * (3 + 5),)},
    "out": {"kernel": (2 * 5, 8), "bias": (8,)},
  }


class MultiHeadAttentionTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_self_attention_matches_naive_multi_head(self):
    x = _x((2, 4, 8))
    module = MultiHeadAttention(num_heads=2, d_k=3, d_v=5)
    params = ref.random_params(module, x)
    mask = combine_masks(causal_mask(4), padding_mask(jnp.asarray(VALID), jnp.asarray(VALID)))
    out = self.variant(module.apply)(params, x, None, mask)
    expected = ref.multi_head_attention(
      ref.as_np(params["params"]), x, None, np.asarray(mask), num_heads=2, d_k=3, d_v=5
    )
    chex.assert_trees_all_close(out, expected, rtol=1e-5, atol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_cross_attention_matches_naive_multi_head(self):
    x, encoded = _x((2, 3, 8)), _x((2, 5, 6), seed=2)
    module = MultiHeadAttention(num_heads=2)  # d_k = d_v = 4
    params = ref.random_params(module, x, encoded)
    key_valid = np.array([[True, True, True, False, False], [True, True, True, True, True]])
    mask = padding_mask(jnp.ones((2, 3), bool), jnp.asarray(key_valid))
    out = self.variant(module.apply)(params, x, encoded, mask)
    expected = ref.multi_head_attention(
      ref.as_np(params["params"]), x, encoded, np.asarray(mask), num_heads=2, d_k=4, d_v=4
    )
    chex.assert_trees_all_close(out, expected, rtol=1e-5, atol=1e-5)


def test_d_model_not_divisible_by_heads_is_a_clear_error():
  x = _x((1, 3, 10))
  with pytest.raises(ValueError, match="d_model=10 is not divisible by num_heads=4"):
    MultiHeadAttention(num_heads=4).init(jax.random.key(0), x)
  # Explicit per-head sizes lift the constraint.
  shapes = _param_shapes(MultiHeadAttention(num_heads=4, d_k=2, d_v=3), x)
  assert shapes["out"]["kernel"] == (12, 10)


def test_sow_returns_attention_weights_per_head_only_when_asked():
  x = _x((2, 4, 8))
  module = MultiHeadAttention(num_heads=2)
  params = ref.random_params(module, x)
  assert "intermediates" not in params
  out, state = module.apply(params, x, None, causal_mask(4), mutable=["intermediates"])
  (weights,) = state["intermediates"]["attention_weights"]
  chex.assert_shape(weights, (2, 2, 4, 4))  # [b, h, q, k]
  np.testing.assert_allclose(np.asarray(weights).sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(np.triu(np.asarray(weights), k=1), 0.0)  # causal
  chex.assert_trees_all_close(out, module.apply(params, x, None, causal_mask(4)))
