"""Tests for tfjax.models.gpt: published sizes, causality, init, tied head, errors, training."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import gpt_tiny
from tests.nn import numpy_reference as ref
from tfjax.data import gpt_inputs
from tfjax.data.gpt_inputs import SpecialTokens
from tfjax.inference import sampling
from tfjax.models.config import count_params
from tfjax.models.gpt import GPT, GPTConfig, GPTForFineTuning, GPTModel, add_tokens
from tfjax.nn.stack import stack_layers

TINY = GPTConfig(
  vocab_size=11,
  max_len=6,
  num_layers=2,
  num_heads=2,
  d_model=8,
  d_ff=16,
  dropout_rate=0.0,
  attention_dropout_rate=0.0,
)


def _tokens(shape, vocab=TINY.vocab_size, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, vocab, size=shape), jnp.int32)


def _params(config, seed=0):
  """Random parameters of the TINY shapes drawn with numpy (see `ref.random_params`)."""
  return ref.random_params(GPT(config), _tokens((2, config.max_len)), seed=seed)


# --- published parameter counts ---------------------------------------------------------------


@pytest.mark.parametrize(
  "vocab_size, max_len, num_layers, d_model, num_heads, pre_norm, expected",
  [
    (40_478, 512, 12, 768, 12, False, 116_534_784),  # GPT-1 (HF OpenAIGPTLMHeadModel)
    (50_257, 1024, 12, 768, 12, True, 124_439_808),  # GPT-2 small (HF GPT2LMHeadModel)
    (50_257, 1024, 24, 1024, 16, True, 354_823_168),  # medium
    (50_257, 1024, 36, 1280, 20, True, 774_030_080),  # large
    (50_257, 1024, 48, 1600, 25, True, 1_557_611_200),  # XL
  ],
  ids=["gpt1", "gpt2_small", "gpt2_medium", "gpt2_large", "gpt2_xl"],
)
def test_count_params_matches_published_sizes(
  vocab_size, max_len, num_layers, d_model, num_heads, pre_norm, expected
):
  config = GPTConfig(
    vocab_size=vocab_size,
    max_len=max_len,
    num_layers=num_layers,
    num_heads=num_heads,
    d_model=d_model,
    d_ff=4 * d_model,
    pre_norm=pre_norm,
  )
  assert count_params(GPT(config), (1, 1)) == expected
  assert count_params(GPT(config.replace(scan_layers=True)), (1, 1)) == expected


# --- the forward pass -------------------------------------------------------------------------


@pytest.mark.parametrize("pre_norm", [False, True], ids=["gpt1_post_ln", "gpt2_pre_ln"])
def test_forward_matches_naive_numpy(pre_norm):
  config = TINY.replace(pre_norm=pre_norm)
  tokens = _tokens((2, 6))
  params = _params(config)
  logits = GPT(config).apply(params, tokens)
  chex.assert_shape(logits, (2, 6, config.vocab_size))
  assert logits.dtype == jnp.float32

  p = ref.as_np(params["params"])
  table = p["token_embed"]["embedding"]
  x = table[np.asarray(tokens)] + p["position_embed"]["embedding"][None, :6]
  for i in range(config.num_layers):
    x = ref.transformer_layer(
      p[f"layer_{i}"],
      x,
      ref.causal(6),
      num_heads=config.num_heads,
      activation="gelu_tanh",
      pre_norm=pre_norm,
      eps=config.layer_norm_epsilon,
    )
  if pre_norm:
    x = ref.layer_norm(x, p["final_norm"], config.layer_norm_epsilon)
  assert ("final_norm" in p) == pre_norm  # GPT-1 (post-LN) has no final LayerNorm
  chex.assert_trees_all_close(logits, x @ table.T, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pre_norm", [False, True], ids=["post_ln", "pre_ln"])
def test_causal_logits_ignore_later_tokens(pre_norm):
  config = TINY.replace(pre_norm=pre_norm)
  tokens = _tokens((2, 6))
  params = _params(config)
  apply = GPT(config).apply
  logits = apply(params, tokens)
  for t in range(5):
    changed = tokens.at[:, t + 1 :].set((tokens[:, t + 1 :] + 1) % config.vocab_size)
    other = apply(params, changed)
    chex.assert_trees_all_close(other[:, : t + 1], logits[:, : t + 1], rtol=1e-6, atol=1e-6)
    assert not np.allclose(other[:, t + 1 :], logits[:, t + 1 :])


@pytest.mark.parametrize("pre_norm", [False, True], ids=["post_ln", "pre_ln"])
def test_causal_gradient_wrt_later_position_embeddings_is_exactly_zero(pre_norm):
  # Position p reads row p of the position table, so d logits[t] / d row[s] is the gradient
  # of the output at t w.r.t. the input embedding at s.
  config = TINY.replace(pre_norm=pre_norm)
  tokens = _tokens((2, 6))
  params = _params(config)

  def logits_of_table(table):
    p = jax.tree.map(lambda a: a, params)  # new nested dicts, same arrays
    p["params"]["position_embed"] = {"embedding": table}
    return GPT(config).apply(p, tokens)  # [b, t, vocab]

  table = params["params"]["position_embed"]["embedding"]
  jac = np.asarray(jax.jit(jax.jacrev(logits_of_table))(table))  # [b, t, vocab, s, d]
  chex.assert_shape(jac, (2, 6, config.vocab_size, 6, config.d_model))
  for t in range(6):
    np.testing.assert_array_equal(jac[:, t, :, t + 1 :], 0.0)  # exactly: nothing leaks back
    assert np.abs(jac[:, t, :, : t + 1]).sum(axis=(1, 3)).min() > 0.0  # every past row matters


# --- initialisation ---------------------------------------------------------------------------


def test_init_std_is_002_with_residual_projections_scaled_by_depth():
  config = GPTConfig(
    vocab_size=512,
    max_len=256,
    num_layers=4,
    num_heads=4,
    d_model=256,
    d_ff=1024,
  )
  tokens = jnp.zeros((1, 8), jnp.int32)
  params = jax.jit(GPT(config).init)(jax.random.key(0), tokens)["params"]
  residual_std = 0.02 / math.sqrt(2 * config.num_layers)  # GPT-2 §2.3

  def check_std(array, std):
    array = np.asarray(array, np.float64)
    assert abs(array.mean()) < 0.05 * std
    assert abs(array.std() - std) < 0.03 * std  # >= 65k draws: relative error ~0.3%

  check_std(params["token_embed"]["embedding"], 0.02)
  check_std(params["position_embed"]["embedding"], 0.02)
  for i in range(config.num_layers):
    layer = params[f"layer_{i}"]
    check_std(layer["self_attention"]["qkv"]["kernel"], 0.02)
    check_std(layer["mlp"]["hidden"]["kernel"], 0.02)
    check_std(layer["self_attention"]["out"]["kernel"], residual_std)
    check_std(layer["mlp"]["output"]["kernel"], residual_std)
    np.testing.assert_array_equal(layer["self_attention"]["out"]["bias"], 0.0)
    np.testing.assert_array_equal(layer["self_attention_norm"]["scale"], 1.0)


# --- the output head --------------------------------------------------------------------------


@pytest.mark.parametrize("pre_norm", [False, True], ids=["post_ln", "pre_ln"])
def test_tied_logits_are_final_hidden_times_transposed_token_embedding(pre_norm):
  config = TINY.replace(pre_norm=pre_norm)
  tokens = _tokens((2, 6))
  params = _params(config)
  assert "lm_head" not in params["params"]
  last = "final_norm" if pre_norm else f"layer_{config.num_layers - 1}"
  logits, state = GPT(config).apply(
    params,
    tokens,
    capture_intermediates=lambda module, method: module.name == last and method == "__call__",
    mutable=["intermediates"],
  )
  (hidden,) = state["intermediates"][last]["__call__"]
  table = np.asarray(params["params"]["token_embed"]["embedding"], np.float64)
  chex.assert_trees_all_close(
    logits, np.asarray(hidden, np.float64) @ table.T, rtol=1e-5, atol=1e-5
  )


def test_untied_model_has_its_own_lm_head():
  config = TINY.replace(tie_embeddings=False)
  tokens = _tokens((2, 6))
  params = _params(config)
  assert jax.tree.map(jnp.shape, params["params"]["lm_head"]) == {
    "kernel": (config.d_model, config.vocab_size)
  }
  logits, state = GPT(config).apply(
    params,
    tokens,
    capture_intermediates=lambda module, method: module.name == "final_norm",
    mutable=["intermediates"],
  )
  (hidden,) = state["intermediates"]["final_norm"]["__call__"]
  kernel = np.asarray(params["params"]["lm_head"]["kernel"], np.float64)
  chex.assert_trees_all_close(logits, np.asarray(hidden, np.float64) @ kernel, rtol=1e-5, atol=1e-5)


# --- configuration errors ---------------------------------------------------------------------


def test_sequence_longer_than_max_len_is_a_clear_error():
  params = _params(TINY)
  with pytest.raises(ValueError, match=r"sequence length 7 is longer .*max_len=6"):
    GPT(TINY).apply(params, _tokens((1, 7)))


def test_d_model_not_divisible_by_heads_is_a_clear_error():
  with pytest.raises(ValueError, match="d_model=10 is not divisible by num_heads=4"):
    TINY.replace(d_model=10, num_heads=4)


def test_unknown_config_key_is_a_clear_error():
  fields = dict(vocab_size=11, max_len=6, num_layers=2, num_heads=2, d_model=8, d_ff=16)
  assert GPTConfig.from_config(fields) == GPTConfig(**fields)
  with pytest.raises(ValueError, match=r"unknown model config keys \['num_layer'\]"):
    GPTConfig.from_config({**fields, "num_layer": 3})


def test_from_config_accepts_the_tiny_recipe():
  config = GPTConfig.from_config(gpt_tiny.get_config().model)
  assert (config.num_layers, config.d_model, config.pre_norm) == (4, 256, True)


# --- dropout and training ---------------------------------------------------------------------


def test_dropout_is_active_only_when_not_deterministic():
  config = TINY.replace(dropout_rate=0.1, attention_dropout_rate=0.1)
  tokens = _tokens((2, 6))
  params = _params(config)

  def run(seed, deterministic):
    return GPT(config).apply(
      params, tokens, deterministic=deterministic, rngs={"dropout": jax.random.key(seed)}
    )

  default = GPT(config).apply(params, tokens)  # deterministic by default
  chex.assert_trees_all_equal(run(1, True), run(2, True), default)
  train = jax.jit(functools.partial(run, deterministic=False))  # one compile for every seed
  dropped = [train(seed) for seed in (1, 1, 2)]
  chex.assert_trees_all_equal(dropped[0], dropped[1])  # reproducible from the rng
  assert not np.allclose(dropped[0], dropped[2])  # another rng, another mask
  assert not np.allclose(dropped[0], default)


def test_tiny_model_overfits_one_batch():
  config = GPTConfig(
    vocab_size=16,
    max_len=16,
    num_layers=2,
    num_heads=2,
    d_model=32,
    d_ff=64,
    dropout_rate=0.0,
    attention_dropout_rate=0.0,
  )
  tokens = _tokens((4, 16), vocab=16)
  model = GPT(config)
  params = ref.random_params(model, tokens[:, :-1], std=0.03)
  optimizer = optax.adam(1e-2)

  def loss_fn(params):
    logits = model.apply(params, tokens[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

  @jax.jit
  def train(params):
    def step(carry, _):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), length=100)
    return params, losses

  params, losses = train(params)
  assert losses[0] > 2.0  # ~ log(16) = 2.77 at init
  assert loss_fn(params) < 0.1, f"loss after 100 steps: {loss_fn(params):.3f}"


def test_decoding_without_a_cache_or_positions_is_an_error_not_a_silent_full_attention():
  config = GPTConfig(vocab_size=11, max_len=8, num_layers=1, num_heads=2, d_model=8, d_ff=16)
  tokens = jnp.zeros((1, 8), jnp.int32)
  params = jax.jit(GPT(config).init)(jax.random.key(0), tokens)["params"]
  decoder = GPT(config.replace(decode=True))
  with pytest.raises(ValueError, match="needs the absolute `positions`"):
    decoder.apply({"params": params}, tokens[:, :3], mutable=["cache"])
  with pytest.raises(ValueError, match="needs the key/value cache"):
    decoder.apply(
      {"params": params}, tokens[:, :3], positions=jnp.arange(3)[None], mutable=["cache"]
    )


# --- packed rows ------------------------------------------------------------------------------


@pytest.mark.parametrize("pre_norm", [False, True], ids=["post_ln", "pre_ln"])
def test_packed_row_logits_equal_each_example_run_alone(pre_norm):
  config = TINY.replace(max_len=8, pre_norm=pre_norm)
  params = _params(config)
  examples = [_tokens((1, n), seed=n) for n in (3, 2, 2)]  # 3 examples, then 1 padding slot
  row = jnp.concatenate([*examples, jnp.zeros((1, 1), jnp.int32)], axis=1)  # [1, 8]
  segment_ids = jnp.array([[1, 1, 1, 2, 2, 3, 3, 0]])
  positions = jnp.array([[0, 1, 2, 0, 1, 0, 1, 0]])
  packed = GPT(config).apply(params, row, positions=positions, segment_ids=segment_ids)
  start = 0
  for tokens in examples:  # the naive reference: each example as its own sequence
    alone = GPT(config).apply(params, tokens)
    n = tokens.shape[1]
    chex.assert_trees_all_close(packed[:, start : start + n], alone, rtol=1e-5, atol=1e-5)
    start += n
  # Without segment ids the later examples see the earlier ones: the test can fail.
  leaky = GPT(config).apply(params, row, positions=positions)
  assert not np.allclose(leaky[:, 3:5], packed[:, 3:5], atol=1e-3)


def test_packed_rows_without_their_positions_are_an_error():
  params = _params(TINY)
  with pytest.raises(ValueError, match=r"packed rows \(segment_ids\) need each example's own"):
    GPT(TINY).apply(params, _tokens((1, 4)), segment_ids=jnp.array([[1, 1, 2, 2]]))


# --- the body ---------------------------------------------------------------------------------


def test_body_gives_the_hidden_states_the_lm_head_projects():
  params = _params(TINY)
  tokens = _tokens((2, 6))
  logits = GPT(TINY).apply(params, tokens)
  # The body shares the LM's parameter names: the LM's checkpoint applies to it as it is.
  embed = GPT(TINY).bind(params).token_embed
  hidden = GPTModel(TINY, embed).apply(params, tokens)
  chex.assert_shape(hidden, (2, 6, TINY.d_model))
  embedding = params["params"]["token_embed"]["embedding"]
  chex.assert_trees_all_close(hidden @ embedding.T, logits, rtol=1e-5, atol=1e-5)


# --- decoding with a KV cache and scanned layers ----------------------------------------------


def test_cached_decoding_with_scan_matches_full_forward():
  config = TINY.replace(num_layers=3, max_len=8, scan_layers=True)
  params = stack_layers(_params(config.replace(scan_layers=False))["params"], config.num_layers)
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
  config = TINY.replace(max_len=16)
  params = ref.random_params(GPT(config), _tokens((1, 16)))["params"]
  prompts = [[3, 1, 4], [1, 5, 9, 2, 6]]
  kwargs = dict(max_new_tokens=8, temperature=0.0)
  loop = sampling.generate(config, params, prompts, **kwargs)
  scanned = sampling.generate(
    config.replace(scan_layers=True), stack_layers(params, config.num_layers), prompts, **kwargs
  )
  assert sampling.generated_tokens(scanned) == sampling.generated_tokens(loop)


@pytest.mark.parametrize("tie", [True, False])
def test_add_tokens_grows_the_vocabulary_keeping_every_pretrained_row(tie):
  """GPT-1 §3.3: start, delimiter and extract appended; the model then runs on their ids and
  gives the old tokens the old logits (the new tokens only add columns)."""
  config = GPTConfig(
    vocab_size=11, max_len=8, num_layers=1, num_heads=2, d_model=8, d_ff=16, tie_embeddings=tie
  )
  tokens = jnp.array([[1, 2, 3, 4]])
  params = GPT(config).init(jax.random.key(0), tokens)["params"]
  grown = add_tokens(params, 3, jax.random.key(1), init_std=0.02)
  table = grown["token_embed"]["embedding"]
  assert table.shape == (14, 8)
  np.testing.assert_array_equal(table[:11], params["token_embed"]["embedding"])
  assert 0.0 < float(jnp.std(table[11:])) < 0.1 and not jnp.allclose(table[11], table[12])
  bigger = config.replace(vocab_size=14)
  old, new = (
    GPT(config).apply({"params": params}, tokens),
    GPT(bigger).apply({"params": grown}, tokens),
  )
  np.testing.assert_allclose(new[..., :11], old, rtol=1e-6, atol=1e-6)
  assert np.isfinite(
    np.asarray(GPT(bigger).apply({"params": grown}, jnp.array([[11, 1, 12, 13]])))
  ).all()


# --- GPT-1's fine-tuning head (§3.3) ----------------------------------------------------------


def _head_params(model, tokens, positions, seed=3):
  """Random parameters (weights N(0, 0.2) so that order effects would show) of `model`."""
  params = model.init(jax.random.key(seed), tokens, positions)["params"]
  leaves, tree = jax.tree.flatten(params)
  rng = np.random.default_rng(seed)
  return jax.tree.unflatten(
    tree, [jnp.asarray(rng.normal(0, 0.2, x.shape), x.dtype) for x in leaves]
  )


def test_fine_tuning_head_reads_the_extract_state_of_each_sequence():
  """logits = classifier(sum of the final hidden states at the extract positions): the GPT's
  own hidden states, gathered by hand."""
  model = GPTForFineTuning(TINY, num_outputs=3, combine="sum")
  tokens, positions = _tokens((2, 2, 6)), jnp.array([[5, 2], [3, 4]])
  params = _head_params(model, tokens, positions)
  logits, lm_logits = model.apply({"params": params}, tokens, positions)
  hidden = GPT(TINY).apply({"params": params["gpt"]}, tokens.reshape(4, 6), method="hidden_states")
  extract = hidden.reshape(2, 2, 6, -1)[jnp.arange(2)[:, None], jnp.arange(2)[None], positions]
  head = params["classifier"]
  chex.assert_trees_all_close(
    logits, extract.sum(1) @ head["kernel"] + head["bias"], rtol=1e-5, atol=1e-6
  )
  lm = GPT(TINY).apply({"params": params["gpt"]}, tokens.reshape(4, 6)).reshape(2, 2, 6, -1)
  chex.assert_trees_all_close(lm_logits, lm, rtol=1e-6)
  assert model.apply({"params": params}, tokens, positions, lm=False)[1] is None


def test_fine_tuning_head_init_is_normal_kernel_and_zero_bias():
  model = GPTForFineTuning(TINY.replace(d_model=64, num_heads=4, d_ff=64), num_outputs=200)
  params = model.init(jax.random.key(0), jnp.zeros((1, 1, 4), jnp.int32), jnp.zeros((1, 1), int))
  head = params["params"]["classifier"]
  assert head["kernel"].shape == (64, 200) and not head["bias"].any()
  assert abs(float(head["kernel"].std()) - 0.02) < 0.002


def test_similarity_is_symmetric_by_construction():
  """Both orders are encoded and their states added: swapping A and B gives the same logits."""
  config = TINY.replace(max_len=10)
  tokens = SpecialTokens.after_vocab(8)
  model = GPTForFineTuning(config, num_outputs=1, combine="sum")
  a, b = [1, 2, 3], [4, 5]
  ab = gpt_inputs.pack(gpt_inputs.similarity_sequences(a, b, tokens, 10), 10, pad_id=0)
  ba = gpt_inputs.pack(gpt_inputs.similarity_sequences(b, a, tokens, 10), 10, pad_id=0)
  as_batch = lambda p: (p["tokens"][None], p["extract_positions"][None])
  params = _head_params(model, *as_batch(ab))
  logits_ab, _ = model.apply({"params": params}, *as_batch(ab))
  logits_ba, _ = model.apply({"params": params}, *as_batch(ba))
  assert not np.array_equal(ab["tokens"], ba["tokens"])
  np.testing.assert_allclose(logits_ab, logits_ba, rtol=1e-6)
  one_order = model.apply(
    {"params": params}, ab["tokens"][None, :1], ab["extract_positions"][None, :1]
  )[0]
  assert not np.allclose(one_order, logits_ab)  # the second order does count


def test_multiple_choice_dropout_shares_one_mask_across_an_example_s_answers():
  """The authors' train.py drops the same features of every answer's extract state: identical
  answers keep identical scores with the classifier's dropout on."""
  model = GPTForFineTuning(TINY, combine="choices", classifier_dropout_rate=0.5)
  tokens = jnp.broadcast_to(_tokens((1, 1, 6)), (2, 3, 6))  # 2 examples alike, answers alike
  positions = jnp.full((2, 3), 5)
  params = _head_params(model, tokens, positions)
  rngs = {"dropout": jax.random.key(1)}
  scores, _ = model.apply({"params": params}, tokens, positions, deterministic=False, rngs=rngs)
  np.testing.assert_allclose(scores, scores[:, :1].repeat(3, 1), rtol=1e-6)
  assert not np.allclose(scores, model.apply({"params": params}, tokens, positions)[0])
  assert not np.allclose(scores[0], scores[1])  # each example draws its own mask


def test_multiple_choice_is_invariant_to_the_order_of_the_choices():
  """One score per answer, each from its own sequence: permuting the answers permutes the
  scores, so the softmax over them picks the same answer."""
  config = TINY.replace(max_len=10)
  tokens = SpecialTokens.after_vocab(8)
  model = GPTForFineTuning(config, combine="choices")
  context, answers = [1, 2, 3], [[4], [5, 6], [7, 1, 2]]
  packed = lambda answers: gpt_inputs.pack(
    gpt_inputs.multiple_choice_sequences(context, answers, tokens, 10), 10, pad_id=0
  )
  forward, order = packed(answers), [2, 0, 1]
  backward = packed([answers[i] for i in order])
  params = _head_params(model, forward["tokens"][None], forward["extract_positions"][None])
  scores, _ = model.apply(
    {"params": params}, forward["tokens"][None], forward["extract_positions"][None]
  )
  permuted, _ = model.apply(
    {"params": params}, backward["tokens"][None], backward["extract_positions"][None]
  )
  chex.assert_shape(scores, (1, 3))
  np.testing.assert_allclose(permuted[0], scores[0, np.array(order)], rtol=1e-6)
  assert len(set(np.asarray(scores[0]).round(5))) == 3  # the answers are told apart
