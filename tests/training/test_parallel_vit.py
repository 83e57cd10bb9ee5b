"""The ViT image classifier in every parallel mode and mesh against the one-device step, on 8
simulated CPU devices (in a subprocess: the device count is fixed when JAX starts), with devices
holding different numbers of real images; ViT's parameter shardings."""

import numpy as np
import pytest
from jax.sharding import PartitionSpec

from tests.training.subprocess_runs import results_of

RUNS = ["jit_data8", "jit_fsdp4", "jit_tensor2", "shard_map", "pmap", "jit_data8_accum2"]


@pytest.fixture(scope="module")
def on_8_devices(tmp_path_factory) -> dict[str, np.ndarray]:
  return results_of("tests.training.run_vit_on_8_devices", tmp_path_factory.mktemp("vit"))


@pytest.mark.parametrize("run", RUNS)
def test_every_mode_and_mesh_gives_the_one_device_losses_and_params(on_8_devices, run):
  one = lambda key: on_8_devices[f"one_device/{key}"]
  got = lambda key: on_8_devices[f"{run}/{key}"]
  np.testing.assert_allclose(got("loss"), one("loss"), rtol=1e-5)
  np.testing.assert_allclose(got("accuracy"), one("accuracy"), rtol=1e-5)
  np.testing.assert_allclose(got("num_tokens"), one("num_tokens"))  # real images counted
  np.testing.assert_allclose(got("params"), one("params"), rtol=1e-5, atol=1e-6)


def test_the_compared_runs_move_the_parameters_far_beyond_the_tolerance(on_8_devices):
  moved = np.abs(on_8_devices["one_device/params"] - on_8_devices["init_params"])
  assert moved.max() > 1e-2, moved.max()  # three Adam updates of lr 1e-2
  assert np.isfinite(on_8_devices["one_device/loss"]).all()
  assert on_8_devices["one_device/num_tokens"].min() < 16  # some rows weighted 0


def test_every_vit_parameter_gets_its_sharding_on_a_2x2x2_mesh(on_8_devices):
  specs = dict(line.split("=", 1) for line in on_8_devices["specs"])
  spec = lambda *axes: str(PartitionSpec(*axes))
  expected = {
    "vit/patch_embed/kernel": spec(None, None, None, "fsdp"),  # (patch, patch, channels, embed)
    "vit/cls_token": spec("fsdp"),
    "vit/position_embed/embedding": spec(None, "fsdp"),
    "vit/layer_1/self_attention/qkv/kernel": spec("fsdp", "tensor"),
    "vit/layer_1/mlp/hidden/kernel": spec("fsdp", "tensor"),
    "vit/pre_logits/kernel": spec("fsdp", None),
    "classifier/kernel": spec("fsdp", None),
    "classifier/bias": spec(None),
  }
  assert {path: specs[path] for path in expected} == expected
