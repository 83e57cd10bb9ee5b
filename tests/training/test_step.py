"""The loss, the train step and the eval step against hand-written references."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tfjax.models.gpt import GPT, GPTConfig
from tfjax.tasks.lm import lm_loss_fn
from tfjax.training import optimizer
from tfjax.training.state import TrainState
from tfjax.training.step import cross_entropy_loss, eval_step, micro_batches, train_step

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


def jit_step(
  model: GPT, tx: optax.GradientTransformation, schedule=None, accum: int = 1, loss_fn=None
):
  schedule = schedule or optax.constant_schedule(0.0)
  return jax.jit(
    functools.partial(
      train_step,
      loss_fn=loss_fn or lm_loss_fn(model),
      optimizer=tx,
      schedule=schedule,
      grad_accum_steps=accum,
    )
  )


def gradient_recorder() -> optax.GradientTransformation:
  """A 'optimizer' whose state is the last gradient it saw and whose update is zero."""
  return optax.GradientTransformation(
    init=lambda params: jax.tree.map(jnp.zeros_like, params),
    update=lambda grads, state, params=None: (jax.tree.map(jnp.zeros_like, grads), grads),
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


# --- gradient accumulation ----------------------------------------------------------------------


def padded_batch(seed: int = 4, batch: int = 8) -> dict:
  """Even rows full, odd rows one token: micro-batches (rows i, i + k, ...) differ in tokens."""
  data = random_batch(seed, batch=batch)
  lengths = np.where(np.arange(batch) % 2 == 0, SEQ_LEN, 1)
  data["weights"] = (np.arange(SEQ_LEN)[None, :] < lengths[:, None]).astype(np.float32)
  return data


def test_micro_batches_take_every_kth_row():
  batch = {"x": np.arange(12).reshape(6, 2), "y": np.arange(6)}
  split = micro_batches(batch, 3)
  chex.assert_shape([split["x"], split["y"]], [(3, 2, 2), (3, 2)])
  for i in range(3):  # strided, so that a device's own rows feed every micro-batch
    np.testing.assert_array_equal(split["x"][i], batch["x"][i::3])
    np.testing.assert_array_equal(split["y"][i], batch["y"][i::3])


def test_accumulated_step_equals_the_big_batch_step_with_unequal_token_counts():
  model, batch, accum = tiny_model(), padded_batch(), 4
  counts = np.asarray(micro_batches(batch, accum)["weights"]).sum(axis=(1, 2))
  assert len(set(counts.tolist())) > 1, counts  # the case a mean of micro-batch means gets wrong

  def with_token_mean_metric(params, batch, rng, deterministic):  # a second token-mean metric
    loss, aux = lm_loss_fn(model)(params, batch, rng, deterministic)
    return loss, {**aux, "loss_copy": loss}

  # Gradients, read back from an 'optimizer' that records them.
  recorder = gradient_recorder()
  state = init_state(recorder)
  big, big_metrics = jit_step(model, recorder, loss_fn=with_token_mean_metric)(state, batch)
  acc, acc_metrics = jit_step(model, recorder, accum=accum, loss_fn=with_token_mean_metric)(
    state, batch
  )
  chex.assert_trees_all_close(acc.opt_state, big.opt_state, rtol=1e-6, atol=1e-7)
  for name in ("loss", "grad_norm", "loss_copy"):
    np.testing.assert_allclose(acc_metrics[name], big_metrics[name], rtol=1e-6, err_msg=name)
  assert float(acc_metrics["num_tokens"]) == batch["weights"].sum()
  micro_grad = jax.jit(jax.grad(lambda p, m: lm_loss_fn(model)(p, m, None, True)[0]))
  micro_grads = [micro_grad(state.params, m) for m in split_rows(batch, accum)]
  mean_of_means = jax.tree.map(lambda *g: sum(g) / accum, *micro_grads)
  gap = optax.tree.norm(optax.tree.sub(mean_of_means, big.opt_state)) / big_metrics["grad_norm"]
  assert gap > 0.05, gap  # the naive mean of micro-batch means is measurably wrong here

  # Parameters after a few clipped AdamW updates on a warmup-cosine schedule.
  config = dict(learning_rate=1e-2, warmup_steps=1, num_steps=10, weight_decay=0.1)
  tx, schedule = optimizer.make_optimizer({**config, "grad_clip_norm": 0.5})
  big_step, acc_step = jit_step(model, tx, schedule), jit_step(model, tx, schedule, accum)
  big_state = acc_state = init_state(tx)
  for _ in range(3):
    big_state, big_metrics = big_step(big_state, batch)
    acc_state, acc_metrics = acc_step(acc_state, batch)
    np.testing.assert_allclose(acc_metrics["loss"], big_metrics["loss"], rtol=1e-6)
    assert float(acc_metrics["learning_rate"]) == float(big_metrics["learning_rate"])
  assert int(acc_state.step) == 3  # one update per step, not per micro-batch
  # atol: a parameter whose true gradient is ~0 gets Adam steps of rounding noise (g / sqrt(v)),
  # ~1e-6 after three updates, which depend on how XLA orders a reduction; real steps are ~1e-2.
  chex.assert_trees_all_close(acc_state.params, big_state.params, rtol=1e-6, atol=5e-6)


def split_rows(batch: dict, k: int) -> list[dict]:
  """Micro-batch i = rows i, i + k, ... written with numpy slicing (the reference split)."""
  return [{name: np.asarray(x)[i::k] for name, x in batch.items()} for i in range(k)]


def test_accumulated_dropout_uses_fold_in_of_step_then_micro_index():
  model, batch, accum, step_index = tiny_model(dropout_rate=0.5), padded_batch(), 2, 3
  recorder = gradient_recorder()
  state = init_state(recorder).replace(step=jnp.int32(step_index))
  new_state, step_metrics = jit_step(model, recorder, accum=accum)(state, batch)

  def reference(params):  # token-weighted sum over micro-batches with their own dropout keys
    step_rng = jax.random.fold_in(state.rng, step_index)
    total, tokens = 0.0, 0.0
    for i, micro in enumerate(split_rows(batch, accum)):
      loss, aux = lm_loss_fn(model)(params, micro, jax.random.fold_in(step_rng, i), False)
      total, tokens = total + loss * aux["num_tokens"], tokens + aux["num_tokens"]
    return total / tokens

  loss, grads = jax.jit(jax.value_and_grad(reference))(state.params)
  np.testing.assert_allclose(step_metrics["loss"], loss, rtol=1e-6)
  chex.assert_trees_all_close(new_state.opt_state, grads, rtol=1e-5, atol=1e-7)


def test_batch_not_divisible_by_grad_accum_steps_raises_at_trace_time():
  tx = optax.sgd(0.1)
  batch = random_batch(batch=6)
  with pytest.raises(ValueError, match=r"6 rows is not divisible by grad_accum_steps=4"):
    jit_step(tiny_model(), tx, accum=4).trace(init_state(tx), batch)  # traced, not compiled
  for bad in (0, 2.5):
    with pytest.raises(ValueError, match="must be an integer >= 1"):
      jit_step(tiny_model(), tx, accum=bad).trace(init_state(tx), batch)


def test_accumulation_needs_num_tokens_in_the_aux():
  tx = optax.sgd(0.1)
  loss_fn = lambda params, batch, rng, deterministic: (
    lm_loss_fn(tiny_model())(params, batch, rng, deterministic)[0],
    {},
  )
  with pytest.raises(ValueError, match="num_tokens"):
    jit_step(tiny_model(), tx, accum=2, loss_fn=loss_fn).trace(init_state(tx), random_batch())
