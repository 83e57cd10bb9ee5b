"""Tests for tfjax.nn.blocks.TransformerLayer against a naive numpy layer with its params."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.nn import numpy_reference as ref
from tfjax.nn.attention import causal_mask, padding_mask
from tfjax.nn.blocks import TransformerLayer

B, T, D, HEADS, D_FF = 2, 4, 8, 2, 16
EPS = 1e-5


def _x(shape, seed=1):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("pre_norm", [False, True], ids=["post_ln", "pre_ln"])
def test_layer_matches_naive_numpy(pre_norm):
  layer = TransformerLayer(
    num_heads=HEADS, d_ff=D_FF, activation="gelu", pre_norm=pre_norm, layer_norm_epsilon=EPS
  )
  x = 3.0 * _x((B, T, D)) + 1.0  # mean and scale far from (0, 1): LayerNorm has work to do
  mask = causal_mask(T)
  params = ref.random_params(layer, x, mask)
  out = layer.apply(params, x, mask)
  expected = ref.transformer_layer(
    ref.as_np(params["params"]),
    x.astype(np.float64),
    np.asarray(mask),
    num_heads=HEADS,
    activation="gelu",
    pre_norm=pre_norm,
    eps=EPS,
  )
  chex.assert_shape(out, (B, T, D))
  chex.assert_trees_all_close(out, expected, rtol=1e-4, atol=1e-5)


def test_post_ln_layer_norm_uses_biased_variance_not_unbiased_std_plus_eps():
  # With every sublayer output zeroed, a post-LN layer returns LayerNorm(LayerNorm(x)) with
  # unit scale: each row has mean 0 and biased variance var / (var + eps) ~ 1.
  layer = TransformerLayer(num_heads=HEADS, d_ff=D_FF, layer_norm_epsilon=EPS)
  x = 5.0 * _x((B, T, D))
  params = jax.tree_util.tree_map_with_path(  # LayerNorms at their init, the rest zero
    lambda path, p: (
      np.ones(p.shape, np.float32) if path[-1].key == "scale" else np.zeros(p.shape, np.float32)
    ),
    jax.eval_shape(layer.init, jax.random.key(0), x),
  )
  out = np.asarray(layer.apply(params, x), np.float64)
  np.testing.assert_allclose(out.mean(-1), 0.0, atol=1e-5)
  np.testing.assert_allclose(out.var(-1), 1.0, rtol=1e-4)  # unbiased std would give (d-1)/d
  x64 = x.astype(np.float64)
  once = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + EPS)
  twice = (once - once.mean(-1, keepdims=True)) / np.sqrt(once.var(-1, keepdims=True) + EPS)
  np.testing.assert_allclose(out, twice, rtol=1e-5, atol=1e-5)


def test_cross_attention_layer_matches_naive_numpy():
  layer = TransformerLayer(num_heads=HEADS, d_ff=D_FF, cross_attention=True)
  x, encoded = _x((B, T, D)), _x((B, 5, D), seed=2)
  key_valid = jnp.array([[True, True, True, False, False], [True] * 5])
  cross_mask = padding_mask(jnp.ones((B, T), bool), key_valid)
  params = ref.random_params(layer, x, causal_mask(T), encoded=encoded)
  out = layer.apply(params, x, causal_mask(T), encoded=encoded, cross_mask=cross_mask)
  expected = ref.transformer_layer(
    ref.as_np(params["params"]),
    x.astype(np.float64),
    np.asarray(causal_mask(T)),
    num_heads=HEADS,
    activation="relu",
    pre_norm=False,
    eps=EPS,
    encoded=encoded.astype(np.float64),
    cross_mask=np.asarray(cross_mask),
  )
  chex.assert_trees_all_close(out, expected, rtol=1e-4, atol=1e-5)


def test_cross_attention_layer_requires_encoded():
  layer = TransformerLayer(num_heads=HEADS, d_ff=D_FF, cross_attention=True)
  with pytest.raises(ValueError, match="needs the encoder output `encoded`"):
    jax.eval_shape(layer.init, jax.random.key(0), _x((B, T, D)))


@pytest.mark.parametrize(
  "dropout_rate, attention_dropout_rate", [(0.3, 0.0), (0.0, 0.3)], ids=["residual", "attention"]
)
def test_dropout_is_off_when_deterministic_and_on_otherwise(dropout_rate, attention_dropout_rate):
  layer = TransformerLayer(
    num_heads=HEADS,
    d_ff=D_FF,
    dropout_rate=dropout_rate,
    attention_dropout_rate=attention_dropout_rate,
  )
  x = _x((B, T, D))
  params = ref.random_params(layer, x, causal_mask(T))

  def run(seed, deterministic):
    return layer.apply(
      params, x, causal_mask(T), deterministic=deterministic, rngs={"dropout": jax.random.key(seed)}
    )

  default = layer.apply(params, x, causal_mask(T))  # deterministic by default
  chex.assert_trees_all_equal(run(1, True), run(2, True), default)
  train = jax.jit(functools.partial(run, deterministic=False))  # one compile for every seed
  dropped = [train(seed) for seed in (1, 1, 2)]
  chex.assert_trees_all_equal(dropped[0], dropped[1])  # reproducible from the rng
  assert not np.allclose(dropped[0], dropped[2])  # another rng, another mask
  assert not np.allclose(dropped[0], default)
