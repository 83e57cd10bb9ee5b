"""LoRA fine-tuning on 8 simulated CPU devices (sharded jit on a 2 x 2 x 2 mesh, shard_map)
against the one-device step: the same losses and adapters, the frozen body bit for bit."""

import numpy as np
import pytest
from jax.sharding import PartitionSpec

from tests.training.subprocess_runs import results_of

RUNS = ["jit_tensor2", "shard_map"]


@pytest.fixture(scope="module")
def on_8_devices(tmp_path_factory) -> dict[str, np.ndarray]:
  return results_of("tests.training.run_lora_on_8_devices", tmp_path_factory.mktemp("lora"))


def _params(results: dict, run: str) -> dict[str, np.ndarray]:
  prefix = f"{run}/params/"
  return {k.removeprefix(prefix): v for k, v in results.items() if k.startswith(prefix)}


@pytest.mark.parametrize("run", RUNS)
def test_sharded_lora_steps_give_the_one_device_losses_adapters_and_frozen_body(on_8_devices, run):
  for key in ("loss", "task_loss", "lm_loss", "accuracy", "grad_norm"):
    np.testing.assert_allclose(
      on_8_devices[f"{run}/metric/{key}"], on_8_devices[f"one_device/metric/{key}"], rtol=1e-5
    )
  one, got = _params(on_8_devices, "one_device"), _params(on_8_devices, run)
  assert set(got) == set(one)
  for path, value in one.items():
    init = on_8_devices[f"init/{path}"]
    trained = path.endswith(("lora_a", "lora_b")) or path.startswith("classifier/")
    if trained:
      # (the attention key bias is frozen here: its zero-gradient noise never reaches Adam)
      np.testing.assert_allclose(got[path], value, rtol=1e-5, atol=1e-6, err_msg=path)
      assert np.abs(value - init).max() > 1e-3, path  # it trained
    else:
      np.testing.assert_array_equal(got[path].view(np.uint8), init.view(np.uint8), err_msg=path)


def test_the_adapters_are_sharded_like_their_kernel_with_the_rank_replicated(on_8_devices):
  # mlp/hidden/lora_b is (lora, mlp): the rank replicated, the MLP units over "tensor".
  assert str(on_8_devices["lora_b_spec"]) == str(PartitionSpec(None, "tensor"))
