"""The three data-parallel modes, FSDP and tensor sharding against the one-device step, on 8
simulated CPU devices (in a subprocess: the device count is fixed when JAX starts); the mesh
and sharding rules; and errors raised before any compilation."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from tests.training.parallel_runs import NAN_STEP_RUNS
from tests.training.subprocess_runs import results_of
from tfjax.training import sharding

RUNS = [
  "jit_data8",
  "jit_fsdp4",
  "jit_tensor2",
  "shard_map",
  "pmap",
  "jit_data8_accum2",
  "shard_map_accum2",
  "first_step_on_host_state",  # train_step before any init_state: see the test below
]


@pytest.fixture(scope="module")
def on_8_devices(tmp_path_factory) -> dict[str, np.ndarray]:
  return results_of("tests.training.run_on_8_devices", tmp_path_factory.mktemp("parallel"))


@pytest.mark.parametrize("run", RUNS)
def test_every_mode_and_mesh_gives_the_one_device_losses_and_params(on_8_devices, run):
  np.testing.assert_allclose(
    on_8_devices[f"{run}/losses"], on_8_devices["one_device/losses"], rtol=1e-5
  )
  np.testing.assert_allclose(
    on_8_devices[f"{run}/params"], on_8_devices["one_device/params"], rtol=1e-5, atol=1e-6
  )


@pytest.mark.parametrize("run", NAN_STEP_RUNS)
def test_every_mode_skips_a_nonfinite_update_as_if_its_batch_were_not_there(on_8_devices, run):
  """optimizer.skip_nonfinite: a NaN batch at step 3 changes no parameter and no moment."""
  losses = on_8_devices[f"{run}/nan_step_losses"]
  assert np.isnan(losses[2]) and int(on_8_devices[f"{run}/nan_step_skipped"]) == 1
  np.testing.assert_allclose(np.delete(losses, 2), on_8_devices["one_device/losses"], rtol=1e-5)
  np.testing.assert_allclose(
    on_8_devices[f"{run}/nan_step_params"], on_8_devices["one_device/params"], rtol=1e-5, atol=1e-6
  )


def test_a_first_step_before_any_init_compiles_for_the_state_shardings(on_8_devices):
  """Parallel knows the state's shardings from its init_fn when it is made: a train_step on a
  host state, with no init_state or abstract_state called first, returns the state sharded as
  checkpoints hold it (FSDP here), not compiled unsharded."""
  assert on_8_devices["first_step_on_host_state/fsdp_leaves"] > 0
  assert on_8_devices["first_step_on_host_state/sharded_as_saved"].all()


def test_the_runs_actually_train(on_8_devices):
  losses = on_8_devices["one_device/losses"]
  assert losses[-1] < losses[0] - 0.2, losses


def test_fsdp_over_8_devices_holds_at_most_a_quarter_of_the_replicated_state(on_8_devices):
  replicated, fsdp = on_8_devices["bytes/replicated"], on_8_devices["bytes/fsdp8"]
  assert fsdp <= replicated / 4, (int(fsdp), int(replicated))


@pytest.mark.parametrize("mesh", ["one_device", "data2_tensor4"])
def test_a_checkpoint_saved_with_fsdp_restores_on_another_mesh_and_continues(on_8_devices, mesh):
  np.testing.assert_allclose(
    on_8_devices[f"restore/{mesh}"], on_8_devices["restore/saved_on_fsdp"], rtol=1e-5
  )


# --- mesh and rules, in this process ----------------------------------------------------------


def test_minus_one_takes_the_devices_the_other_axes_leave():
  assert sharding.mesh_shape({"data": -1, "fsdp": 2}, 8) == (4, 2, 1)
  assert sharding.mesh_shape({"tensor": 4, "data": -1}, 8) == (2, 1, 4)


@pytest.mark.parametrize(
  "mesh, message",
  [
    ({"data": 3}, "needs a multiple of 3 devices, but there are 8"),
    ({"data": 2}, "uses 2 of the 8 devices"),
    ({"data": -1, "fsdp": -1}, "at most one -1"),
    ({"model": 2}, "unknown axes"),
  ],
)
def test_a_mesh_that_does_not_fit_the_devices_is_a_clear_error(mesh, message):
  with pytest.raises(ValueError, match=message):
    sharding.mesh_shape(mesh, 8)


def test_a_batch_not_divisible_by_the_data_parallel_size_is_a_clear_error():
  mesh = sharding.make_mesh({"data": 1}, jax.devices()[:1])
  sharding.check_batch(mesh, 6, grad_accum_steps=3)
  with pytest.raises(ValueError, match="not divisible by .* grad_accum_steps=4"):
    sharding.check_batch(mesh, 6, grad_accum_steps=4)


class FakeMesh:
  shape = {"data": 2, "fsdp": 4, "tensor": 2}


def test_logical_axes_map_to_mesh_axes_and_undividable_dims_stay_replicated():
  rules = sharding.DEFAULT_RULES
  assert sharding.mesh_spec(("embed", "mlp"), (32, 64), FakeMesh, rules) == PartitionSpec(
    "fsdp", "tensor"
  )
  # 50,257 (GPT-2's vocabulary) does not split over 2 devices: replicated, not an error.
  assert sharding.mesh_spec(("vocab", "embed"), (50257, 32), FakeMesh, rules) == PartitionSpec(
    None, "fsdp"
  )
  assert sharding.mesh_spec(("layers", "embed"), (4, 30), FakeMesh, rules) == PartitionSpec(
    None, None
  )


def test_every_gpt_parameter_has_logical_axes():
  from tfjax.models.gpt import GPT, PARAM_AXES, GPTConfig
  from tfjax.nn.partitioning import params_logical_axes

  for tied, pre_norm in ((True, True), (False, False)):
    config = GPTConfig(vocab_size=16, max_len=8, num_layers=2, num_heads=2, d_model=8, d_ff=16,
                       tie_embeddings=tied, pre_norm=pre_norm)  # fmt: skip
    shapes = jax.eval_shape(GPT(config).init, jax.random.key(0), jax.ShapeDtypeStruct((1, 8), int))
    axes = params_logical_axes(shapes["params"], PARAM_AXES)
    assert axes["layer_0"]["mlp"]["hidden"]["kernel"] == ("embed", "mlp")
    assert axes["token_embed"]["embedding"] == ("vocab", "embed")
    if not tied:  # GPT's own row; the building blocks' table alone does not know it
      assert axes["lm_head"]["kernel"] == ("embed", "vocab")
      with pytest.raises(ValueError, match="lm_head/kernel has no logical axes; add a row"):
        params_logical_axes(shapes["params"])


@pytest.mark.parametrize(
  "mode, message",
  [("shard_map", "data parallel only"), ("pmap", "data parallel only"), ("gspmd", "unknown")],
)
def test_a_mode_that_cannot_run_on_the_mesh_is_refused_before_compiling(mode, message):
  from tfjax.training.parallel import Parallel

  with pytest.raises(ValueError, match=message):
    Parallel(mode, FakeMesh, (), init_fn=None, loss_fn=None, optimizer=None, schedule=None)
