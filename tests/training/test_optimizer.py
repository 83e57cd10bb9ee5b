"""Schedules against their closed forms, the decay mask, and the optimizer's properties."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tfjax.training import optimizer


def _train_config(**overrides):
  config = dict(
    learning_rate=1e-2,
    warmup_steps=0,
    num_steps=100,
    b1=0.9,
    b2=0.95,
    eps=1e-8,
    weight_decay=0.1,
    grad_clip_norm=0.0,
  )
  config.update(overrides)
  return config


def _gpt_like_params():
  """A two-block pre-LN GPT parameter tree, written by hand."""

  def block(seed):
    rng = np.random.default_rng(seed)
    dense = lambda i, o: {"kernel": rng.normal(size=(i, o)), "bias": rng.normal(size=(o,))}
    return {
      "ln_1": {"scale": rng.normal(size=(8,)), "bias": rng.normal(size=(8,))},
      "attention": {
        "query": {"kernel": rng.normal(size=(8, 2, 4)), "bias": rng.normal(size=(2, 4))},
        "out": {"kernel": rng.normal(size=(2, 4, 8)), "bias": rng.normal(size=(8,))},
      },
      "ln_2": {"scale": rng.normal(size=(8,)), "bias": rng.normal(size=(8,))},
      "mlp": {"fc": dense(8, 32), "proj": dense(32, 8)},
    }

  rng = np.random.default_rng(0)
  params = {
    "token_embed": {"embedding": rng.normal(size=(16, 8))},
    "pos_embed": {"embedding": rng.normal(size=(12, 8))},
    "block_0": block(1),
    "block_1": block(2),
    "ln_f": {"scale": rng.normal(size=(8,)), "bias": rng.normal(size=(8,))},
  }
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)


def _leaf_names(tree):
  return {
    jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
  }


# ------------------------------------------------------------------------------ schedules


def test_warmup_cosine_matches_closed_form():
  peak, warmup, total = 2.5e-4, 20, 120

  def expected(t):
    if t < warmup:
      return peak * t / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))

  schedule = optimizer.warmup_cosine_schedule(peak, warmup, total)
  for t in (0, 7, warmup, 45, 70, 101, total):
    np.testing.assert_allclose(float(schedule(t)), expected(t), rtol=1e-5, atol=1e-12)
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(float(schedule(warmup)), peak, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(70)), peak / 2, rtol=1e-5)  # mid-cosine
  assert float(schedule(total)) == pytest.approx(0.0, abs=1e-12)


def test_linear_warmup_linear_decay_matches_closed_form():
  peak, warmup, total = 1e-4, 10, 110
  schedule = optimizer.linear_warmup_linear_decay(peak, warmup, total)
  expected = lambda t: peak * t / warmup if t < warmup else peak * (total - t) / (total - warmup)
  for t in (0, 4, warmup, 60, 97, total):
    np.testing.assert_allclose(float(schedule(t)), expected(t), rtol=1e-5, atol=1e-12)


def test_inverse_sqrt_matches_vaswani_eq3():
  d_model, warmup = 512, 4000
  schedule = optimizer.inverse_sqrt_schedule(d_model, warmup)
  # Eq. 3 with step_num = n, counted from 1; optax's update count is n - 1.
  eq3 = lambda n: d_model**-0.5 * min(n**-0.5, n * warmup**-1.5)
  for n in (1, 2, 100, 3999, 4000, 4001, 10_000, 100_000):
    np.testing.assert_allclose(float(schedule(n - 1)), eq3(n), rtol=1e-5)
  rates = np.asarray(jax.vmap(schedule)(jnp.arange(20_000)))
  assert np.all(np.isfinite(rates)) and rates[0] > 0
  assert int(np.argmax(rates)) == warmup - 1  # the peak is at step_num = warmup


def test_make_schedule_picks_by_name():
  config = _train_config(learning_rate=1e-3, warmup_steps=10, num_steps=50)
  cosine = optimizer.make_schedule(config)  # the default
  np.testing.assert_allclose(float(cosine(30)), 0.5e-3 * (1 + math.cos(math.pi * 0.5)), rtol=1e-5)
  linear = optimizer.make_schedule({**config, "schedule": "linear"})
  np.testing.assert_allclose(float(linear(30)), 0.5e-3, rtol=1e-5)
  rsqrt = optimizer.make_schedule({**config, "schedule": "inverse_sqrt", "learning_rate": 2.0}, 64)
  np.testing.assert_allclose(float(rsqrt(99)), 2.0 * 64**-0.5 * 100**-0.5, rtol=1e-5)


@pytest.mark.parametrize(
  "overrides, field",
  [
    (dict(warmup_steps=200), "warmup_steps"),
    (dict(warmup_steps=100), "warmup_steps"),
    (dict(learning_rate=-1e-3), "learning_rate"),
    (dict(num_steps=0), "num_steps"),
    (dict(weight_decay=-0.1), "weight_decay"),
    (dict(b2=1.0), "b2"),
    (dict(grad_clip_norm=-1.0), "grad_clip_norm"),
    (dict(num_steps=10.5), "num_steps"),
    (dict(schedule="step"), "schedule"),
    (dict(schedule="inverse_sqrt"), "d_model"),
  ],
)
def test_bad_config_raises_naming_the_field(overrides, field):
  with pytest.raises(ValueError, match=field):
    optimizer.make_optimizer(_train_config(**overrides))


# ------------------------------------------------------------------------------ decay mask


def test_decay_mask_excludes_biases_and_gains_and_includes_matrices():
  params = _gpt_like_params()
  mask = _leaf_names(optimizer.decay_mask(params))
  assert len(mask) == len(jax.tree.leaves(params))
  for name, decayed in mask.items():
    last = name.rsplit("[", 1)[-1]
    if "'bias'" in last or "'scale'" in last:
      assert decayed is False, name
    else:
      assert "'kernel'" in last or "'embedding'" in last
      assert decayed is True, name
  assert sum(mask.values()) == 2 + 2 * 4  # 2 embeddings + 4 matrices per block


def test_decay_mask_accepts_abstract_params():
  abstract = jax.eval_shape(_gpt_like_params)
  assert optimizer.decay_mask(abstract) == optimizer.decay_mask(_gpt_like_params())


def test_decay_mask_on_flax_params_with_multihead_bias():
  import flax.linen as nn

  class Attn(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.DenseGeneral((2, 4), name="query")(x)  # kernel [8, 2, 4], bias [2, 4]
      return nn.LayerNorm(name="ln")(nn.DenseGeneral(8, axis=(-2, -1), name="out")(x))

  params = Attn().init(jax.random.key(0), jnp.ones((1, 8)))["params"]
  mask = optimizer.decay_mask(params)
  assert mask["query"] == {"kernel": True, "bias": False}
  assert mask["out"] == {"kernel": True, "bias": False}
  assert mask["ln"] == {"scale": False, "bias": False}


# ------------------------------------------------------------------------------ optimizer


def test_adamw_decays_matrices_and_leaves_biases_alone():
  lr, wd = 1e-2, 0.1
  tx, _ = optimizer.make_optimizer(_train_config(learning_rate=lr, weight_decay=wd))
  params = _gpt_like_params()
  zero_grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = jax.jit(tx.update)(zero_grads, tx.init(params), params)
  new_params = optax.apply_updates(params, updates)
  mask = optimizer.decay_mask(params)
  expected = jax.tree.map(lambda w, m: w - lr * wd * w if m else w, params, mask)
  chex.assert_trees_all_close(new_params, expected, rtol=1e-6)
  for name, leaf in _leaf_names(updates).items():
    if "bias" in name or "scale" in name:
      assert not np.any(np.asarray(leaf)), name


def test_clipping_bounds_the_update():
  # On its first step Adam's update is -lr * g / (|g| + eps): with a large eps it is nearly
  # linear in g, so the clipped gradient shows, and its norm is at most lr * clip_norm / eps.
  clip, lr, eps = 1.0, 1e3, 1e3
  config = _train_config(learning_rate=lr, eps=eps, weight_decay=0.0, grad_clip_norm=clip)
  tx, _ = optimizer.make_optimizer(config)
  params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)}
  grads = {"w": jnp.full((3, 4), 30.0), "b": jnp.arange(4.0) * 40.0}
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)

  norm = math.sqrt(sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(grads)))
  clipped = jax.tree.map(lambda g: g * clip / norm, grads)
  expected = jax.tree.map(lambda g: -lr * g / (jnp.abs(g) + eps), clipped)
  chex.assert_trees_all_close(updates, expected, rtol=1e-5)
  assert float(optax.tree.norm(updates)) <= lr * clip / eps

  unclipped_tx, _ = optimizer.make_optimizer({**config, "grad_clip_norm": None})
  unclipped, _ = jax.jit(unclipped_tx.update)(grads, unclipped_tx.init(params), params)
  assert float(optax.tree.norm(unclipped)) > 10 * lr * clip / eps


def test_optimizer_state_has_one_layout_with_or_without_clipping():
  # A run resumed with clipping switched on or off must find the state it saved.
  params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)}
  layouts = [
    jax.tree.structure(optimizer.make_optimizer(_train_config(grad_clip_norm=c))[0].init(params))
    for c in (0.0, None, 1.0)
  ]
  assert layouts[0] == layouts[1] == layouts[2]


def test_accumulation_is_not_the_optimizers_business():
  # The train step accumulates micro-batches; the optimizer ignores train.grad_accum_steps, so
  # its state (and a checkpoint's layout) is the same for any value.
  params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)}
  states = [
    optimizer.make_optimizer(_train_config(grad_accum_steps=k))[0].init(params) for k in (1, 4)
  ]
  assert jax.tree.structure(states[0]) == jax.tree.structure(states[1])
  assert jax.tree.structure(states[0]) == jax.tree.structure(
    optimizer.make_optimizer(_train_config())[0].init(params)
  )


# ------------------------------------------------------------------------------ frozen leaves


def _adapted_params():
  """A pre-trained body with one LoRA adapter, and a new head (tfjax.nn.lora's layout)."""
  rng = np.random.default_rng(0)
  params = {
    "body": {
      "qkv": {
        "kernel": rng.normal(size=(8, 24)),
        "bias": rng.normal(size=(24,)),
        "lora_a": rng.normal(size=(8, 2)),
        "lora_b": rng.normal(size=(2, 24)),
      },
      "norm": {"scale": rng.normal(size=(8,)), "bias": rng.normal(size=(8,))},
    },
    "head": {"kernel": rng.normal(size=(8, 3)), "bias": rng.normal(size=(3,))},
  }
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)


def _trainable(params):
  return jax.tree_util.tree_map_with_path(
    lambda path, _: path[0].key == "head" or path[-1].key.startswith("lora_"), params
  )


TRAINED = {"['body']['qkv']['lora_a']", "['body']['qkv']['lora_b']", "['head']['kernel']",
           "['head']['bias']"}  # fmt: skip


def test_frozen_leaves_have_no_optimizer_state_and_are_not_updated():
  params = _adapted_params()
  tx, _ = optimizer.make_optimizer(_train_config(grad_clip_norm=1.0), trainable=_trainable)
  state = tx.init(params)
  arrays = [(jax.tree_util.keystr(p), x) for p, x in jax.tree_util.tree_leaves_with_path(state)]
  moments = {path: x for path, x in arrays if x.ndim}  # Adam's mu and nu; the rest are counts
  assert len(moments) == 2 * len(TRAINED)
  assert {path.split(".mu")[-1] for path in moments if ".mu" in path} == TRAINED
  state_bytes = sum(x.nbytes for _, x in arrays)
  trained_bytes = sum(x.nbytes for k, x in _leaf_names(params).items() if k in TRAINED)
  assert state_bytes == 2 * trained_bytes + 8  # mu, nu, the int32 counts of Adam and schedule

  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = jax.jit(tx.update)(grads, state, params)
  for name, leaf in _leaf_names(updates).items():
    assert np.any(np.asarray(leaf)) == (name in TRAINED), name


def test_clipping_and_weight_decay_see_only_the_trained_leaves():
  # The trained leaves' updates are those of the plain optimizer on the trained leaves alone,
  # whatever the frozen leaves' gradients (huge here: they would dominate a global clip).
  config = _train_config(grad_clip_norm=1.0, weight_decay=0.1)
  params = _adapted_params()
  grads = jax.tree.map(jnp.ones_like, params)
  grads["body"]["qkv"]["kernel"] = grads["body"]["qkv"]["kernel"] * 1e6
  tx, _ = optimizer.make_optimizer(config, trainable=_trainable)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)

  def trained(tree):
    return {
      "qkv": {k: tree["body"]["qkv"][k] for k in ("lora_a", "lora_b")},
      "head": tree["head"],
    }

  plain, _ = optimizer.make_optimizer(config)
  expected, _ = jax.jit(plain.update)(trained(grads), plain.init(trained(params)), trained(params))
  chex.assert_trees_all_close(trained(updates), expected, rtol=1e-6)
  assert np.any(np.asarray(expected["qkv"]["lora_a"]))


def test_without_frozen_leaves_the_optimizer_is_the_plain_one():
  params = _adapted_params()
  plain, _ = optimizer.make_optimizer(_train_config())
  everything, _ = optimizer.make_optimizer(_train_config(), trainable=None)
  assert jax.tree.structure(plain.init(params)) == jax.tree.structure(everything.init(params))
