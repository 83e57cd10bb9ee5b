"""The language-modelling task: its loss against a numpy reference, and its config checks,
which refuse a bad run before anything is written."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tfjax.models.gpt import GPT, GPTConfig
from tfjax.tasks import registry
from tfjax.tasks.lm import lm_loss_fn


def test_loss_is_the_mean_next_token_cross_entropy_over_the_weighted_tokens():
  config = GPTConfig(vocab_size=11, max_len=6, num_layers=1, num_heads=2, d_model=8, d_ff=16)
  model = GPT(config)
  rng = np.random.default_rng(0)
  batch = {
    "inputs": rng.integers(0, 11, (2, 6)).astype(np.int32),
    "targets": rng.integers(0, 11, (2, 6)).astype(np.int32),
    "weights": np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], np.float32),
  }
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 6), jnp.int32))["params"]
  loss, aux = jax.jit(lm_loss_fn(model), static_argnums=3)(params, batch, None, True)
  logits = np.asarray(jax.jit(model.apply)({"params": params}, batch["inputs"]), np.float64)
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(log_p, batch["targets"][..., None], -1)[..., 0]
  weights = batch["weights"]
  np.testing.assert_allclose(loss, (nll * weights).sum() / weights.sum(), rtol=1e-5)
  assert float(aux["num_tokens"]) == 10.0


def test_dropout_draws_its_masks_from_the_given_rng():
  config = GPTConfig(vocab_size=11, max_len=6, num_layers=1, num_heads=2, d_model=8, d_ff=16,
                     dropout_rate=0.5)  # fmt: skip
  model = GPT(config)
  tokens = np.arange(12, dtype=np.int32).reshape(2, 6) % 11
  batch = {"inputs": tokens, "targets": tokens}
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 6), jnp.int32))["params"]
  loss_fn = jax.jit(lm_loss_fn(model), static_argnums=3)
  loss = lambda rng, deterministic: float(loss_fn(params, batch, rng, deterministic)[0])
  key, other = jax.random.key(1), jax.random.key(2)
  assert loss(key, False) == loss(key, False) != loss(other, False)
  assert loss(None, True) == loss(key, True)  # dropout off: the rng is not used


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("max_new_tokens", 32, r"sample.max_new_tokens=32 must be in \[1, model.max_len=32\)"),
    ("top_p", 0.0, r"sample.top_p=0.0 \(in \(0, 1\]\)"),
    ("prompts", ("",), r"sample.prompts must be non-empty strings"),
  ],
)
def test_a_bad_sampling_config_is_rejected_before_training(
  tmp_path, tiny_config, field, value, message
):
  tiny_config.sample[field] = value
  with pytest.raises(ValueError, match=message):
    registry.train(tiny_config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_seq_len_longer_than_max_len_is_rejected_before_anything_is_written(tmp_path, tiny_config):
  tiny_config.data.seq_len = 64
  with pytest.raises(ValueError, match=r"data.seq_len=64 .*model.max_len=32"):
    registry.train(tiny_config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()
