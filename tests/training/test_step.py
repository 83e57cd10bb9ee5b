"""The loss, the train step and the eval step against hand-written references."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from tfjax.models.gpt import GPT, GPTConfig
from tfjax.training.lm import lm_loss_fn
from tfjax.training.state import TrainState
from tfjax.training.step import cross_entropy_loss, eval_step, train_step

VOCAB, SEQ_LEN, BATCH = 16, 8, 2


def tiny_model(dropout_rate: float = 0.0) -> GPT:
  return GPT(
    GPTConfig(
      vocab_size=VOCAB,
      max_len=SEQ_LEN,
      num_layers=1,
      num_heads=2,
      d_model=8,
      d_ff=16,
      dropout_rate=dropout_rate,
      attention_dropout_rate=dropout_rate,
    )
  )


def random_batch(seed: int = 0, vocab: int = VOCAB, batch: int = BATCH) -> dict:
  tokens = np.random.default_rng(seed).integers(0, vocab, (batch, SEQ_LEN + 1), dtype=np.int32)
  return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}


@functools.cache
def initial_params() -> dict:
  """The tiny model's parameters (dropout has none: one set serves every dropout rate)."""
  tokens = jnp.zeros((1, SEQ_LEN), jnp.int32)
  return jax.jit(tiny_model().init)(jax.random.key(0), tokens)["params"]


def init_state(tx: optax.GradientTransformation, rng_seed: int = 1) -> TrainState:
  return TrainState.create(initial_params(), tx, jax.random.PRNGKey(rng_seed))


def jit_step(model: GPT, tx: optax.GradientTransformation, schedule=None):
  schedule = schedule or optax.constant_schedule(0.0)
  return jax.jit(
    functools.partial(train_step, loss_fn=lm_loss_fn(model), optimizer=tx, schedule=schedule)
  )


def numpy_cross_entropy(logits, targets, weights) -> float:
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  nll = -np.take_along_axis(log_probs, np.asarray(targets)[..., None], -1)[..., 0]
  return float((nll * weights).sum() / weights.sum())


# --- loss ---------------------------------------------------------------------------------------


def test_cross_entropy_equals_numpy_log_softmax_and_ignores_padding():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 7)).astype(np.float32) * 4
  targets = rng.integers(0, 7, (3, 5))
  weights = (rng.random((3, 5)) > 0.3).astype(np.float32)
  loss, num_tokens = cross_entropy_loss(jnp.asarray(logits), jnp.asarray(targets), weights)
  np.testing.assert_allclose(loss, numpy_cross_entropy(logits, targets, weights), rtol=1e-6)
  assert float(num_tokens) == weights.sum()

  # Whatever sits at the padded positions changes nothing.
  logits[weights == 0] = rng.normal(size=(int((weights == 0).sum()), 7)) * 100
  targets = np.where(weights == 0, 0, targets)
  again, _ = cross_entropy_loss(jnp.asarray(logits), jnp.asarray(targets), weights)
  np.testing.assert_allclose(again, loss, rtol=1e-6)


def test_cross_entropy_without_weights_is_the_plain_mean_in_float32():
  logits = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3, 5)), jnp.bfloat16)
  targets = jnp.array([[0, 1, 2], [3, 4, 0]])
  loss, num_tokens = cross_entropy_loss(logits, targets)
  assert loss.dtype == jnp.float32 and float(num_tokens) == 6
  expected = numpy_cross_entropy(np.asarray(logits, np.float32), targets, np.ones((2, 3)))
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_all_padding_gives_zero_loss_not_nan():
  loss, num_tokens = cross_entropy_loss(
    jnp.ones((2, 4, 3)), jnp.zeros((2, 4), int), jnp.zeros((2, 4))
  )
  assert float(loss) == 0.0 and float(num_tokens) == 0.0


# --- train step ---------------------------------------------------------------------------------


def test_train_step_equals_hand_written_adamw():
  lr, b1, b2, eps, wd = 0.01, 0.9, 0.98, 1e-6, 0.1
  tx = optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=wd)
  model, batch = tiny_model(), random_batch()
  step = jit_step(model, tx, optax.constant_schedule(lr))
  state = init_state(tx)

  def reference_loss(params):  # no dropout (rate 0): the plain forward pass
    logits = model.apply({"params": params}, batch["inputs"])
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(log_probs, batch["targets"][..., None], -1).mean()

  params = jax.tree.map(np.asarray, state.params)
  m = jax.tree.map(np.zeros_like, params)
  v = jax.tree.map(np.zeros_like, params)
  for t in (1, 2):
    loss, grads = jax.jit(jax.value_and_grad(reference_loss))(params)
    grads = jax.tree.map(np.asarray, grads)
    state, step_metrics = step(state, batch)
    np.testing.assert_allclose(step_metrics["loss"], loss, rtol=1e-6)
    norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in jax.tree.leaves(grads)))
    np.testing.assert_allclose(step_metrics["grad_norm"], norm, rtol=1e-5)
    assert float(step_metrics["learning_rate"]) == np.float32(lr)

    m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
    v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)

    def adamw(p, m, v, t=t):
      m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
      return p - lr * (m_hat / (np.sqrt(v_hat) + eps) + wd * p)

    params = jax.tree.map(adamw, params, m, v)
    assert int(state.step) == t
    chex.assert_trees_all_close(state.params, params, rtol=1e-5, atol=1e-7)


def test_dropout_rng_is_fold_in_of_the_state_rng_and_step():
  model, batch = tiny_model(dropout_rate=0.5), random_batch()
  tx = optax.sgd(0.1)
  step = jit_step(model, tx)
  state = init_state(tx)
  at_5 = state.replace(step=jnp.int32(5))

  new_a, metrics_a = step(at_5, batch)
  new_b, metrics_b = step(init_state(tx).replace(step=jnp.int32(5)), batch)
  chex.assert_trees_all_equal(new_a.params, new_b.params)  # same rng and step: same update

  dropout_rng = jax.random.fold_in(state.rng, 5)
  expected, _ = jax.jit(lm_loss_fn(model), static_argnums=3)(
    state.params, batch, dropout_rng, False
  )
  np.testing.assert_allclose(metrics_a["loss"], expected, rtol=1e-6)

  new_c, metrics_c = step(state.replace(step=jnp.int32(6)), batch)
  assert float(metrics_c["loss"]) != float(metrics_a["loss"])  # another step: another mask
  new_d, _ = step(init_state(tx, rng_seed=2).replace(step=jnp.int32(5)), batch)
  for other in (new_c, new_d):
    assert not all(
      np.array_equal(x, y)
      for x, y in zip(jax.tree.leaves(other.params), jax.tree.leaves(new_a.params), strict=True)
    )


def test_eval_step_is_the_deterministic_loss():
  model, batch = tiny_model(dropout_rate=0.5), random_batch()
  state = init_state(optax.sgd(0.1))
  result = jax.jit(functools.partial(eval_step, loss_fn=lm_loss_fn(model)))(state.params, batch)
  logits = jax.jit(model.apply)({"params": state.params}, batch["inputs"])  # deterministic
  expected = numpy_cross_entropy(logits, batch["targets"], np.ones(batch["targets"].shape))
  np.testing.assert_allclose(result["loss"], expected, rtol=1e-5)
  assert float(result["num_tokens"]) == BATCH * SEQ_LEN


def test_a_tiny_model_overfits_one_batch():
  model = tiny_model()
  batch = random_batch(seed=3, vocab=VOCAB, batch=4)
  tx = optax.adam(3e-2)
  step = jit_step(model, tx)
  state = init_state(tx)
  losses = []
  for _ in range(150):
    state, step_metrics = step(state, batch)
    losses.append(float(step_metrics["loss"]))
  assert losses[0] > 2.0 and losses[-1] < 0.1, losses[::25]
