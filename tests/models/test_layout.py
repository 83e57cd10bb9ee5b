"""Tests for tfjax.models.layout: parameter trees between the unrolled and scanned layer
layouts, on GPT's parameters (the reference layout is the model's own `init`)."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.nn import numpy_reference as ref
from tfjax.models.gpt import GPT, GPTConfig
from tfjax.models.layout import stack_layers, unstack_layers

TINY = GPTConfig(
  vocab_size=11,
  max_len=8,
  num_layers=3,
  num_heads=2,
  d_model=8,
  d_ff=16,
  dropout_rate=0.0,
  attention_dropout_rate=0.0,
)
SCANNED = TINY.replace(scan_layers=True)


def _tokens(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, TINY.vocab_size, shape), jnp.int32)


@functools.cache
def _params(config: GPTConfig) -> dict:
  """Unscanned random `params` (numpy draws, every parameter off its init value)."""
  config = config.replace(scan_layers=False)
  return ref.random_params(GPT(config), _tokens((1, config.max_len)))["params"]


def _shapes(config: GPTConfig) -> dict:
  tokens = jax.ShapeDtypeStruct((1, config.max_len), jnp.int32)
  return jax.eval_shape(GPT(config).init, jax.random.key(0), tokens)


def test_stacked_params_have_the_scanned_models_structure_and_shapes():
  stacked = stack_layers(_params(TINY), TINY.num_layers)
  expected = _shapes(SCANNED)["params"]
  chex.assert_trees_all_equal_shapes_and_dtypes(stacked, expected)
  assert "layers" in stacked and not any(k.startswith("layer_") for k in stacked)
  # Slice i of every stacked leaf is layer i.
  for i in range(TINY.num_layers):
    layer_i = jax.tree.map(lambda leaf, i=i: leaf[i], stacked["layers"])
    chex.assert_trees_all_equal(layer_i, _params(TINY)[f"layer_{i}"])


def test_stack_then_unstack_is_identity_both_ways():
  params = _params(TINY)
  chex.assert_trees_all_equal(unstack_layers(stack_layers(params, TINY.num_layers)), params)
  scanned = ref.random_params(GPT(SCANNED), _tokens((1, 8)))
  round_trip = stack_layers(unstack_layers(scanned), SCANNED.num_layers)
  chex.assert_trees_all_equal(round_trip, scanned)  # a {"params": ...} variables dict too


def test_layout_conversion_applies_to_optimizer_state_that_mirrors_params():
  params = _params(TINY)
  optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
  state = optimizer.init(params)
  grads = jax.tree.map(lambda p: 0.1 * p, params)
  update = jax.jit(optimizer.update)
  _, state = update(grads, state, params)  # mu and nu no longer zero
  stacked_params = stack_layers(params, TINY.num_layers)
  stacked = stack_layers(state, TINY.num_layers)
  # The converted state is what the optimizer keeps for the scanned parameters ...
  chex.assert_trees_all_equal_structs(stacked, optimizer.init(stacked_params))
  _, direct = update(
    stack_layers(grads, TINY.num_layers), optimizer.init(stacked_params), stacked_params
  )
  chex.assert_trees_all_close(stacked, direct, rtol=1e-6, atol=0)
  # ... and converts back exactly.
  chex.assert_trees_all_equal(unstack_layers(stacked), state)


def test_layout_conversion_of_abstract_shapes():
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _params(TINY))
  stacked = stack_layers(abstract, TINY.num_layers)
  chex.assert_trees_all_equal_shapes_and_dtypes(stacked, _shapes(SCANNED)["params"])
  assert jax.tree.map(lambda x: (x.shape, x.dtype), unstack_layers(stacked)) == jax.tree.map(
    lambda x: (x.shape, x.dtype), abstract
  )


def test_stack_with_the_wrong_number_of_layers_is_a_clear_error():
  with pytest.raises(
    ValueError, match=r"expected layer keys layer_0 \.\.\. layer_3 .*num_layers=4"
  ):
    stack_layers(_params(TINY), 4)
  with pytest.raises(ValueError, match="both 'layers' and layer_i keys"):
    unstack_layers({"layers": {"w": np.zeros((2, 3))}, "layer_0": {"w": np.zeros(3)}})
