"""Tests for GPT's scanned layers and rematerialisation, and tfjax.models.layout.

The reference for a scanned or rematerialised model is the plain model (a Python loop over
`layer_{i}`, no remat), itself tested against numpy in test_gpt.py.
"""

import functools
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.nn import numpy_reference as ref
from tfjax.inference import sampling
from tfjax.models.config import REMAT_POLICIES
from tfjax.models.gpt import GPT, GPTConfig, count_params
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


# --- layout conversion ------------------------------------------------------------------------


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


def test_param_count_is_the_same_scanned_or_not():
  assert count_params(SCANNED) == count_params(TINY)
  gpt2_small = GPTConfig(
    vocab_size=50_257, max_len=1024, num_layers=12, num_heads=12, d_model=768, d_ff=3072
  )
  assert count_params(gpt2_small.replace(scan_layers=True)) == 124_439_808  # HF GPT2LMHeadModel


# --- the scanned forward pass -----------------------------------------------------------------


@pytest.mark.parametrize("pre_norm", [True, False], ids=["pre_ln", "post_ln"])
def test_scanned_forward_equals_unscanned_forward_on_stacked_params(pre_norm):
  config = TINY.replace(pre_norm=pre_norm)
  params = _params(config)
  tokens = _tokens((2, 8))
  expected, sown = GPT(config).apply({"params": params}, tokens, mutable=["intermediates"])
  stacked = stack_layers(params, config.num_layers)
  scanned, scanned_sown = GPT(config.replace(scan_layers=True)).apply(
    {"params": stacked}, tokens, mutable=["intermediates"]
  )
  chex.assert_trees_all_close(scanned, expected, rtol=1e-5, atol=1e-5)
  # Sown values (each layer's attention weights) come stacked too, and unstack to the loop's.
  chex.assert_trees_all_close(unstack_layers(scanned_sown), sown, rtol=1e-5, atol=1e-6)


def test_scanned_dropout_is_reproducible_per_seed_and_off_when_deterministic():
  config = SCANNED.replace(dropout_rate=0.3)
  params = stack_layers(_params(config), config.num_layers)
  tokens = _tokens((2, 8))
  run = jax.jit(
    lambda seed: GPT(config).apply(
      {"params": params}, tokens, deterministic=False, rngs={"dropout": jax.random.key(seed)}
    )
  )
  chex.assert_trees_all_equal(run(1), run(1))
  assert not np.allclose(run(1), run(2))
  assert not np.allclose(run(1), GPT(config).apply({"params": params}, tokens))


# --- rematerialisation ------------------------------------------------------------------------


@functools.cache
def _loss_grads_and_hlo(config: GPTConfig) -> tuple[jax.Array, dict, str]:
  """LM loss and gradients of the random params (stacked if scanned) on one batch, with dropout
  as the config says, and the compiled program's HLO."""
  params = _params(config)
  if config.scan_layers:
    params = stack_layers(params, config.num_layers)
  tokens = _tokens((2, 8), seed=1)

  def loss_fn(params):
    logits = GPT(config).apply(
      {"params": params},
      tokens[:, :-1],
      deterministic=False,
      rngs={"dropout": jax.random.key(3)},
    )
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

  compiled = jax.jit(jax.value_and_grad(loss_fn)).lower(params).compile()
  loss, grads = compiled(params)
  return loss, grads, compiled.as_text()


# Attention dropout on, so remat must replay its masks (residual dropout off: shorter compiles).
REMAT = TINY.replace(num_layers=2, dropout_rate=0.0, attention_dropout_rate=0.1)


@pytest.mark.parametrize(
  "policy, scan_layers",
  # Every policy in the layer loop; and remat inside nn.scan.
  [(policy, False) for policy in sorted(set(REMAT_POLICIES) - {"none"})] + [("full", True)],
  ids=lambda value: ("scan" if value else "loop") if isinstance(value, bool) else value,
)
def test_remat_policy_gives_the_same_loss_and_gradients_as_no_remat(policy, scan_layers):
  config = REMAT.replace(scan_layers=scan_layers)
  loss, grads, _ = _loss_grads_and_hlo(config)
  remat_loss, remat_grads, _ = _loss_grads_and_hlo(config.replace(remat_policy=policy))
  chex.assert_trees_all_close(remat_loss, loss, rtol=1e-5, atol=1e-5)
  chex.assert_trees_all_close(remat_grads, grads, rtol=1e-5, atol=1e-5)


def test_remat_recomputes_the_forward_matmuls_in_the_backward_pass():
  # Without remat the backward pass reuses the forward matmuls' outputs. With "full" the
  # compiled gradient computes them again; "dots" keeps them all; "dots_no_batch" recomputes
  # only attention's batched einsums (logits and weighted values).
  dots = {
    policy: len(re.findall(r" dot\(", _loss_grads_and_hlo(REMAT.replace(remat_policy=policy))[2]))
    for policy in REMAT_POLICIES
  }
  assert dots["none"] == dots["dots"] < dots["dots_no_batch"] < dots["full"], dots
  jaxpr = lambda policy: str(
    jax.make_jaxpr(lambda p: GPT(REMAT.replace(remat_policy=policy)).apply(p, _tokens((2, 8))))(
      {"params": _params(REMAT)}
    )
  )
  assert "remat" in jaxpr("full") and "remat" not in jaxpr("none")


def test_unknown_remat_policy_is_a_clear_error():
  with pytest.raises(ValueError, match=r"remat_policy='dots_saveable' is unknown; choose one of"):
    TINY.replace(remat_policy="dots_saveable")


# --- decoding with a KV cache -----------------------------------------------------------------


def test_cached_decoding_with_scan_matches_full_forward():
  config = SCANNED
  params = stack_layers(_params(config), config.num_layers)
  sequence = _tokens((2, 8), seed=2)
  full = GPT(config).apply({"params": params}, sequence)  # [b, 8, V]
  cache = sampling.init_cache(config, 2, 8)
  chex.assert_shape(cache["layers"]["self_attention"]["cached_key"], (3, 2, 8, 2, 4))

  @jax.jit
  def step(cache, tokens, positions):
    logits, variables = GPT(config.replace(decode=True)).apply(
      {"params": params, "cache": cache}, tokens, positions=positions, mutable=["cache"]
    )
    return logits, variables["cache"]

  prompt_len = 3
  logits, cache = step(cache, sequence[:, :prompt_len], jnp.broadcast_to(jnp.arange(3), (2, 3)))
  chex.assert_trees_all_close(logits, full[:, :prompt_len], rtol=1e-5, atol=1e-5)
  for t in range(prompt_len, 8):
    logits, cache = step(cache, sequence[:, t : t + 1], jnp.full((2, 1), t))
    chex.assert_trees_all_close(logits[:, 0], full[:, t], rtol=1e-5, atol=1e-5)


def test_generate_with_scanned_layers_equals_generate_unscanned():
  config = TINY.replace(num_layers=2, max_len=16)
  params = ref.random_params(GPT(config), _tokens((1, 16)))["params"]
  prompts = [[3, 1, 4], [1, 5, 9, 2, 6]]
  kwargs = dict(max_new_tokens=8, temperature=0.0)
  loop = sampling.generate(config, params, prompts, **kwargs)
  scanned = sampling.generate(
    config.replace(scan_layers=True), stack_layers(params, config.num_layers), prompts, **kwargs
  )
  assert sampling.generated_tokens(scanned) == sampling.generated_tokens(loop)
