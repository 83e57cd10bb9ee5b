"""Tests for tfjax.nn.feedforward: activations against their closed forms, FFN against numpy."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.nn import numpy_reference as ref
from tfjax.nn.feedforward import FeedForward, activation_fn

X = np.linspace(-5.0, 5.0, 41, dtype=np.float32)


def test_relu_is_max_with_zero():
  np.testing.assert_array_equal(activation_fn("relu")(X), np.maximum(X, 0.0))


def test_gelu_is_the_exact_erf_form():
  expected = [0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0))) for x in X.astype(np.float64)]
  np.testing.assert_allclose(activation_fn("gelu")(X), expected, rtol=1e-6, atol=1e-6)


def test_gelu_tanh_is_the_tanh_approximation():
  c = math.sqrt(2.0 / math.pi)
  x = X.astype(np.float64)
  expected = 0.5 * x * (1.0 + np.tanh(c * (x + 0.044715 * x**3)))
  np.testing.assert_allclose(activation_fn("gelu_tanh")(X), expected, rtol=1e-6, atol=1e-6)
  # ... and is not the exact form (the two differ by up to ~5e-4 near |x| = 2).
  assert np.abs(np.asarray(activation_fn("gelu_tanh")(X)) - ref.gelu(x)).max() > 1e-4


def test_unknown_activation_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown activation 'swish'.*gelu_tanh"):
    activation_fn("swish")
  with pytest.raises(ValueError, match="unknown activation"):
    FeedForward(d_ff=8, activation="swish").init(jax.random.key(0), jnp.ones((1, 2, 4)))


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh"])
def test_feed_forward_matches_naive_numpy(activation):
  x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
  module = FeedForward(d_ff=8, activation=activation)
  params = module.init(jax.random.key(0), x)
  # Biases start at zero: move them so a dropped bias would show.
  params = jax.tree.map(lambda p: p + 0.1 * jnp.cos(jnp.arange(p.size).reshape(p.shape)), params)
  shapes = jax.tree.map(jnp.shape, params["params"])
  assert shapes == {
    "hidden": {"kernel": (4, 8), "bias": (8,)},
    "output": {"kernel": (8, 4), "bias": (4,)},
  }
  expected = ref.feed_forward(ref.as_np(params["params"]), x.astype(np.float64), activation)
  chex.assert_trees_all_close(module.apply(params, x), expected, rtol=1e-5, atol=1e-6)
