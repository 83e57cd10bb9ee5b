"""The translation Transformer (label-smoothed loss, packed sentence pairs) in every parallel mode
and mesh against the one-device step, on 8 simulated CPU devices (in a subprocess: the device
count is fixed when JAX starts); the devices' parts hold unequal target-token counts. Also the
Transformer's parameter shardings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from tests.training.subprocess_runs import results_of
from tfjax.nn.partitioning import path_str

RUNS = ["jit_data8", "jit_fsdp4", "jit_tensor2", "shard_map", "pmap", "jit_data8_accum2"]


@pytest.fixture(scope="module")
def on_8_devices(tmp_path_factory) -> dict[str, np.ndarray]:
  return results_of(
    "tests.training.run_translation_on_8_devices", tmp_path_factory.mktemp("parallel_translation")
  )


@pytest.mark.parametrize("run", RUNS)
def test_every_mode_and_mesh_gives_the_one_device_losses_and_params(on_8_devices, run):
  """Every aux term is a target-token mean (tfjax.tasks.translation.translation_loss_fn), so
  the parts' token-weighted sum is exactly the whole batch's, whatever each part holds."""
  one = lambda key: on_8_devices[f"one_device/{key}"]
  got = lambda key: on_8_devices[f"{run}/{key}"]
  for key in ("loss", "nll", "accuracy"):
    np.testing.assert_allclose(got(key), one(key), rtol=1e-5, err_msg=key)
  np.testing.assert_allclose(got("num_tokens"), one("num_tokens"))
  # All parameters but the attention key biases (see device_runs.flat_params).
  np.testing.assert_allclose(got("params"), one("params"), rtol=1e-5, atol=1e-6)


def test_the_devices_hold_unequal_token_counts(on_8_devices):
  """The point of packed batches: under the 8-way data split every step's parts differ."""
  per_device = on_8_devices["device_tokens"]  # [steps, 8]
  assert (per_device.min(1) < per_device.max(1)).all(), per_device
  np.testing.assert_array_equal(per_device.sum(1), on_8_devices["one_device/num_tokens"])


def test_the_compared_runs_move_the_parameters_far_beyond_the_tolerance(on_8_devices):
  moved = np.abs(on_8_devices["one_device/params"] - on_8_devices["init_params"])
  assert moved.max() > 1e-2, moved.max()  # four Adam updates of lr 3e-3 to 6e-3
  loss = on_8_devices["one_device/loss"]
  assert np.isfinite(loss).all() and loss[-1] < loss[0], loss


# --- shardings of the Transformer's parameters --------------------------------------------------


def _param_paths() -> set[str]:
  from tfjax.models.transformer import Transformer, TransformerConfig

  config = TransformerConfig(
    vocab_size=64, max_len=16, num_layers=2, num_heads=2, d_model=32, d_ff=64
  )
  tokens = jax.ShapeDtypeStruct((1, 16), jnp.int32)
  shapes = jax.eval_shape(Transformer(config).init, jax.random.key(0), tokens, tokens)["params"]
  return {path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(shapes)[0]}


def test_every_transformer_parameter_gets_its_sharding_on_a_2x2x2_mesh(on_8_devices):
  specs = dict(line.split("=", 1) for line in on_8_devices["specs"])
  assert set(specs) == _param_paths()
  spec = lambda *axes: str(PartitionSpec(*axes))
  expected = {
    "token_embed/embedding": spec("tensor", "fsdp"),  # (vocab, embed)
    "encoder/layer_0/self_attention/qkv/kernel": spec("fsdp", "tensor"),
    "encoder/layer_0/self_attention/out/kernel": spec("tensor", "fsdp"),
    "encoder/layer_1/mlp/hidden/kernel": spec("fsdp", "tensor"),
    "encoder/layer_1/mlp/output/kernel": spec("tensor", "fsdp"),
    "decoder/layer_0/self_attention/qkv/kernel": spec("fsdp", "tensor"),
    "decoder/layer_0/self_attention/out/kernel": spec("tensor", "fsdp"),
    "decoder/layer_0/cross_attention/query/kernel": spec("fsdp", "tensor"),
    "decoder/layer_0/cross_attention/key_value/kernel": spec("fsdp", "tensor"),
    "decoder/layer_0/cross_attention/out/kernel": spec("tensor", "fsdp"),
    "decoder/layer_1/mlp/hidden/kernel": spec("fsdp", "tensor"),
    "decoder/layer_1/mlp/output/kernel": spec("tensor", "fsdp"),
  }
  assert {path: specs[path] for path in expected} == expected
  # ... and the 2x2x2 run holds its trained token table that way.
  assert str(on_8_devices["jit_tensor2/token_embed_spec"]) == spec("tensor", "fsdp")
