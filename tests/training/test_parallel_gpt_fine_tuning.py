"""GPT-1-style fine-tuning (multiple choice on a post-LN GPT, classification on a pre-LN one;
L_task + 0.5 L_LM) in every parallel mode and mesh against the one-device step, on 8 simulated
CPU devices (in a subprocess: the device count is fixed when JAX starts), with devices holding
different numbers of examples and of real tokens; GPTForFineTuning's parameter shardings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from tests.training.subprocess_runs import results_of
from tfjax.nn.partitioning import path_str

TASKS = ["multiple_choice", "classification"]
RUNS = ["jit_data8", "jit_fsdp4", "jit_tensor2", "shard_map", "pmap", "jit_data8_accum2"]
METRICS = ["loss", "task_loss", "lm_loss", "accuracy"]


@pytest.fixture(scope="module")
def on_8_devices(tmp_path_factory) -> dict[str, np.ndarray]:
  return results_of(
    "tests.training.run_gpt_fine_tuning_on_8_devices", tmp_path_factory.mktemp("parallel_gpt")
  )


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("task", TASKS)
def test_every_mode_and_mesh_gives_the_one_device_losses_and_params(on_8_devices, task, run):
  one = lambda key: on_8_devices[f"{task}/one_device/{key}"]
  got = lambda key: on_8_devices[f"{task}/{run}/{key}"]
  for key in METRICS:
    np.testing.assert_allclose(got(key), one(key), rtol=1e-5, err_msg=key)
  np.testing.assert_allclose(got("num_tokens"), one("num_tokens"))  # weighted examples counted
  # All parameters but the attention key biases and the multiple-choice classifier bias, whose
  # true gradients are 0 (run_gpt_fine_tuning_on_8_devices.compared).
  np.testing.assert_allclose(got("params"), one("params"), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("task", TASKS)
def test_the_compared_runs_move_the_parameters_far_beyond_the_tolerance(on_8_devices, task):
  moved = np.abs(on_8_devices[f"{task}/one_device/params"] - on_8_devices[f"{task}/init_params"])
  assert moved.max() > 1e-2, moved.max()  # three Adam updates of lr 1e-2
  for key in METRICS:
    assert np.isfinite(on_8_devices[f"{task}/one_device/{key}"]).all(), key


@pytest.mark.parametrize("task", TASKS)
def test_the_devices_hold_different_numbers_of_examples_and_real_tokens(on_8_devices, task):
  weights, real_tokens = on_8_devices[f"{task}/weights"], on_8_devices[f"{task}/real_tokens"]
  assert (weights == 0).any() and (weights[:, 0] == 1).all()
  per_device = (weights * real_tokens).reshape(len(weights), 8, -1).sum(-1)  # [steps, devices]
  assert (per_device.min(-1) < per_device.max(-1)).all(), per_device


# --- shardings of GPTForFineTuning's parameters -------------------------------------------


def _param_paths(task: str) -> set[str]:
  from tfjax.models.gpt import GPTConfig, GPTForFineTuning

  pre_norm, num_outputs, combine, choices = {
    "multiple_choice": (False, 1, "choices", 3),
    "classification": (True, 3, "sum", 1),
  }[task]
  config = GPTConfig(
    vocab_size=32, max_len=16, num_layers=2, num_heads=2, d_model=16, d_ff=32, pre_norm=pre_norm
  )
  model = GPTForFineTuning(config, num_outputs=num_outputs, combine=combine)
  tokens = jax.ShapeDtypeStruct((1, choices, 16), jnp.int32)
  positions = jax.ShapeDtypeStruct((1, choices), jnp.int32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), tokens, positions)["params"]
  return {path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(shapes)[0]}


@pytest.mark.parametrize("task", TASKS)
def test_every_gpt_fine_tuning_parameter_gets_its_sharding_on_a_2x2x2_mesh(on_8_devices, task):
  specs = dict(line.split("=", 1) for line in on_8_devices[f"{task}/specs"])
  assert set(specs) == _param_paths(task)
  spec = lambda *axes: str(PartitionSpec(*axes))
  expected = {
    "gpt/token_embed/embedding": spec("tensor", "fsdp"),  # (vocab, embed)
    "gpt/position_embed/embedding": spec(None, "fsdp"),
    "gpt/layer_1/self_attention/qkv/kernel": spec("fsdp", "tensor"),
    "gpt/layer_1/self_attention/qkv/bias": spec("tensor"),
    "gpt/layer_1/self_attention/out/kernel": spec("tensor", "fsdp"),
    "gpt/layer_1/mlp/hidden/kernel": spec("fsdp", "tensor"),
    "gpt/layer_1/mlp/output/kernel": spec("tensor", "fsdp"),
    "gpt/layer_1/mlp_norm/scale": spec("fsdp"),
    "classifier/kernel": spec("fsdp", None),  # (embed, classes): DEFAULT_RULES map no "classes"
    "classifier/bias": spec(None),
  }
  if task == "classification":  # pre-LN: a final LayerNorm
    expected["gpt/final_norm/scale"] = spec("fsdp")
  assert {path: specs[path] for path in expected} == expected
  # ... and the 2x2x2 run holds its trained head and token table that way.
  for path in ("classifier/kernel", "gpt/token_embed/embedding"):
    assert str(on_8_devices[f"{task}/jit_tensor2/{path}/spec"]) == expected[path]
