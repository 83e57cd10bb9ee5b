"""Tests for tfjax.nn.stack, the one layer stack of GPT, BERT and the Transformer, and its two
parameter layouts (unrolled `layer_{i}` and scanned `layers`).

The reference for a scanned or rematerialised model is the same model as a plain Python loop
over `layer_{i}` without remat, itself tested against numpy in tests/models/.
"""

import dataclasses
import functools
import re
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.nn import numpy_reference as ref
from tfjax.models.bert import BertConfig, BertForPreTraining, BertModel, attention_weights
from tfjax.models.config import count_params
from tfjax.models.gpt import GPT, GPTConfig
from tfjax.models.transformer import Transformer, TransformerConfig
from tfjax.nn.stack import REMAT_POLICIES, apply_layers, stack_layers, unstack_layers

# Residual dropout off (short compiles), attention dropout on: remat must replay its masks.
SIZES = dict(num_layers=3, num_heads=2, d_model=8, d_ff=16, dropout_rate=0.0)
RNG = np.random.default_rng(0)
TOKENS = jnp.asarray(RNG.integers(1, 11, (2, 8)), jnp.int32)
PADDED = TOKENS.at[0, 6:].set(0)  # BERT and the Transformer mask padding (id 0)


@dataclasses.dataclass(frozen=True)
class Family:
  config: object
  model: Callable  # config -> linen module
  inputs: tuple  # positional inputs of `apply`
  stacks: int = 1  # layer stacks in the model (the Transformer's encoder and decoder: 2)


FAMILIES = {
  "gpt": Family(
    GPTConfig(vocab_size=11, max_len=8, attention_dropout_rate=0.1, **SIZES), GPT, (TOKENS,)
  ),
  "bert": Family(
    BertConfig(vocab_size=11, max_len=8, attention_dropout_rate=0.1, **SIZES),
    BertForPreTraining,
    (PADDED,),
  ),
  "transformer": Family(
    TransformerConfig(vocab_size=11, max_len=8, attention_dropout_rate=0.1, **SIZES),
    Transformer,
    (PADDED, TOKENS),
    stacks=2,
  ),
}


@functools.cache
def _params(name: str) -> dict:
  """Unscanned random `params` (numpy draws, every parameter off its init value)."""
  family = FAMILIES[name]
  return ref.random_params(family.model(family.config), *family.inputs)["params"]


def _loss_and_grads(name: str, dropout: bool, **changes) -> tuple[jax.Array, dict]:
  """A scalar of every output and its gradients, on the unscanned params (stacked if scanned)."""
  family = FAMILIES[name]
  config = family.config.replace(**changes)
  params = _params(name)
  if config.scan_layers:
    params = stack_layers(params, config.num_layers)

  def loss(params):
    outputs = family.model(config).apply(
      {"params": params},
      *family.inputs,
      deterministic=not dropout,
      rngs={"dropout": jax.random.key(3)},
    )
    return sum(jnp.mean(jnp.tanh(x)) for x in jax.tree.leaves(outputs))

  return jax.jit(jax.value_and_grad(loss))(params)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_scanned_layers_give_the_loops_outputs_and_gradients(name):
  family = FAMILIES[name]
  scanned = family.config.replace(scan_layers=True)
  params = _params(name)
  expected, sown = family.model(family.config).apply(
    {"params": params}, *family.inputs, mutable=["intermediates"]
  )
  outputs, scanned_sown = family.model(scanned).apply(
    {"params": stack_layers(params, scanned.num_layers)}, *family.inputs, mutable=["intermediates"]
  )
  chex.assert_trees_all_close(outputs, expected, rtol=1e-5, atol=1e-5)
  # Sown values (each layer's attention weights) come stacked, and unstack to the loop's.
  chex.assert_trees_all_close(unstack_layers(scanned_sown), sown, rtol=1e-5, atol=1e-6)
  loss, grads = _loss_and_grads(name, dropout=False)
  scanned_loss, scanned_grads = _loss_and_grads(name, dropout=False, scan_layers=True)
  chex.assert_trees_all_close(scanned_loss, loss, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(
    unstack_layers(scanned_grads), grads, rtol=1e-4, atol=1e-6
  )  # the same gradients, stacked


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_param_count_is_the_same_scanned_or_not(name):
  family = FAMILIES[name]
  shapes = [x.shape for x in family.inputs]
  scanned = family.config.replace(scan_layers=True)
  assert count_params(family.model(scanned), *shapes) == count_params(
    family.model(family.config), *shapes
  )


REMAT_CASES = [
  # Every policy in GPT's layer loop; "full" in every family's loop and scan.
  *[("gpt", policy, False) for policy in sorted(set(REMAT_POLICIES) - {"none", "full"})],
  *[(name, "full", scan) for name in sorted(FAMILIES) for scan in (False, True)],
  ("bert", "dots", False),
]


@pytest.mark.parametrize(
  "name, policy, scan",
  REMAT_CASES,
  ids=[f"{n}-{p}-{'scan' if s else 'loop'}" for n, p, s in REMAT_CASES],
)
def test_remat_policy_gives_the_same_loss_and_gradients_as_no_remat(name, policy, scan):
  loss, grads = _loss_and_grads(name, dropout=True, scan_layers=scan)
  remat_loss, remat_grads = _loss_and_grads(
    name, dropout=True, scan_layers=scan, remat_policy=policy
  )
  chex.assert_trees_all_close(remat_loss, loss, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(remat_grads, grads, rtol=1e-5, atol=1e-6)
  # One rematerialised call per layer (one per scanned stack); none without remat.
  family = FAMILIES[name]
  jaxpr = lambda config: str(
    jax.make_jaxpr(lambda p: family.model(config).apply(p, *family.inputs))(
      {"params": stack_layers(_params(name), config.num_layers) if scan else _params(name)}
    )
  )
  config = family.config.replace(scan_layers=scan)
  per_stack = 1 if scan else config.num_layers
  assert jaxpr(config.replace(remat_policy=policy)).count("remat") == family.stacks * per_stack
  assert "remat" not in jaxpr(config)


def test_remat_recomputes_the_forward_matmuls_in_the_backward_pass():
  # Without remat the backward pass reuses the forward matmuls' outputs. With "full" the
  # compiled gradient computes them again; "dots" keeps them all; "dots_no_batch" recomputes
  # only attention's batched einsums (logits and weighted values).
  family = FAMILIES["gpt"]

  def num_dots(policy):
    model = family.model(family.config.replace(num_layers=2, remat_policy=policy))
    params = ref.random_params(model, TOKENS)
    loss = lambda p: model.apply(
      p, TOKENS, deterministic=False, rngs={"dropout": jax.random.key(0)}
    )
    hlo = jax.jit(jax.grad(lambda p: loss(p).mean())).lower(params).compile().as_text()
    return len(re.findall(r" dot\(", hlo))

  dots = {policy: num_dots(policy) for policy in REMAT_POLICIES}
  assert dots["none"] == dots["dots"] < dots["dots_no_batch"] < dots["full"], dots


def test_unknown_remat_policy_is_a_clear_error():
  with pytest.raises(ValueError, match=r"remat_policy='dots_saveable' is unknown; choose one of"):
    FAMILIES["gpt"].config.replace(remat_policy="dots_saveable")
  with pytest.raises(ValueError, match=r"remat_policy='x' is unknown"):
    apply_layers(None, TOKENS, {}, num_layers=1, deterministic=True, remat_policy="x")


def test_scanned_dropout_is_reproducible_per_seed_and_off_when_deterministic():
  config = FAMILIES["gpt"].config.replace(scan_layers=True, dropout_rate=0.3)
  params = stack_layers(_params("gpt"), config.num_layers)
  run = jax.jit(
    lambda seed: GPT(config).apply(
      {"params": params}, TOKENS, deterministic=False, rngs={"dropout": jax.random.key(seed)}
    )
  )
  chex.assert_trees_all_equal(run(1), run(1))
  assert not np.allclose(run(1), run(2))
  assert not np.allclose(run(1), GPT(config).apply({"params": params}, TOKENS))


def test_bert_hidden_states_and_attention_weights_are_the_same_scanned():
  config = FAMILIES["bert"].config
  params = _params("bert")["bert"]
  apply = lambda config, params: BertModel(config).apply(
    {"params": params}, PADDED, return_hidden_states=True, mutable=["intermediates"]
  )
  out, sown = apply(config, params)
  scanned_out, scanned_sown = apply(
    config.replace(scan_layers=True), stack_layers(params, config.num_layers)
  )
  assert len(scanned_out.hidden_states) == config.num_layers + 1
  chex.assert_trees_all_close(scanned_out, out, rtol=1e-5, atol=1e-5)
  weights, scanned_weights = attention_weights(sown), attention_weights(scanned_sown)
  assert len(scanned_weights) == config.num_layers
  chex.assert_trees_all_close(scanned_weights, weights, rtol=1e-5, atol=1e-6)


# --- the two parameter layouts, on GPT's parameters (the reference: the model's own init) ---

GPT_TINY = GPTConfig(
  vocab_size=11,
  max_len=8,
  num_layers=3,
  num_heads=2,
  d_model=8,
  d_ff=16,
  dropout_rate=0.0,
  attention_dropout_rate=0.0,
)
GPT_SCANNED = GPT_TINY.replace(scan_layers=True)


def _gpt_tokens(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, GPT_TINY.vocab_size, shape), jnp.int32)


@functools.cache
def _gpt_params(config: GPTConfig) -> dict:
  """Unscanned random `params` (numpy draws, every parameter off its init value)."""
  config = config.replace(scan_layers=False)
  return ref.random_params(GPT(config), _gpt_tokens((1, config.max_len)))["params"]


def _gpt_shapes(config: GPTConfig) -> dict:
  tokens = jax.ShapeDtypeStruct((1, config.max_len), jnp.int32)
  return jax.eval_shape(GPT(config).init, jax.random.key(0), tokens)


def test_stacked_params_have_the_scanned_models_structure_and_shapes():
  stacked = stack_layers(_gpt_params(GPT_TINY), GPT_TINY.num_layers)
  expected = _gpt_shapes(GPT_SCANNED)["params"]
  chex.assert_trees_all_equal_shapes_and_dtypes(stacked, expected)
  assert "layers" in stacked and not any(k.startswith("layer_") for k in stacked)
  # Slice i of every stacked leaf is layer i.
  for i in range(GPT_TINY.num_layers):
    layer_i = jax.tree.map(lambda leaf, i=i: leaf[i], stacked["layers"])
    chex.assert_trees_all_equal(layer_i, _gpt_params(GPT_TINY)[f"layer_{i}"])


def test_stack_then_unstack_is_identity_both_ways():
  params = _gpt_params(GPT_TINY)
  chex.assert_trees_all_equal(unstack_layers(stack_layers(params, GPT_TINY.num_layers)), params)
  scanned = ref.random_params(GPT(GPT_SCANNED), _gpt_tokens((1, 8)))
  round_trip = stack_layers(unstack_layers(scanned), GPT_SCANNED.num_layers)
  chex.assert_trees_all_equal(round_trip, scanned)  # a {"params": ...} variables dict too


def test_layout_conversion_applies_to_optimizer_state_that_mirrors_params():
  params = _gpt_params(GPT_TINY)
  optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
  state = optimizer.init(params)
  grads = jax.tree.map(lambda p: 0.1 * p, params)
  update = jax.jit(optimizer.update)
  _, state = update(grads, state, params)  # mu and nu no longer zero
  stacked_params = stack_layers(params, GPT_TINY.num_layers)
  stacked = stack_layers(state, GPT_TINY.num_layers)
  # The converted state is what the optimizer keeps for the scanned parameters ...
  chex.assert_trees_all_equal_structs(stacked, optimizer.init(stacked_params))
  _, direct = update(
    stack_layers(grads, GPT_TINY.num_layers), optimizer.init(stacked_params), stacked_params
  )
  chex.assert_trees_all_close(stacked, direct, rtol=1e-6, atol=0)
  # ... and converts back exactly.
  chex.assert_trees_all_equal(unstack_layers(stacked), state)


def test_layout_conversion_of_abstract_shapes():
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _gpt_params(GPT_TINY))
  stacked = stack_layers(abstract, GPT_TINY.num_layers)
  chex.assert_trees_all_equal_shapes_and_dtypes(stacked, _gpt_shapes(GPT_SCANNED)["params"])
  assert jax.tree.map(lambda x: (x.shape, x.dtype), unstack_layers(stacked)) == jax.tree.map(
    lambda x: (x.shape, x.dtype), abstract
  )


def test_stack_with_the_wrong_number_of_layers_is_a_clear_error():
  with pytest.raises(
    ValueError, match=r"expected layer keys layer_0 \.\.\. layer_3 .*num_layers=4"
  ):
    stack_layers(_gpt_params(GPT_TINY), 4)
  with pytest.raises(ValueError, match="both 'layers' and layer_i keys"):
    unstack_layers({"layers": {"w": np.zeros((2, 3))}, "layer_0": {"w": np.zeros(3)}})
