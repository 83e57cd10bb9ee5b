"""BERT pre-training (MLM + NSP) and classification in every parallel mode and mesh against the
one-device step, on 8 simulated CPU devices (in a subprocess: the device count is fixed when JAX
starts), also with unequal masked counts per device; BERT's parameter shardings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from tests.training.subprocess_runs import results_of
from tfjax.nn.partitioning import path_str

TASKS = ["pretraining", "classification"]
RUNS = ["jit_data8", "jit_fsdp4", "jit_tensor2", "shard_map", "pmap", "jit_data8_accum2"]
UNEQUAL_RUNS = ["jit_data8", "shard_map", "pmap", "jit_data8_accum2"]


@pytest.fixture(scope="module")
def on_8_devices(tmp_path_factory) -> dict[str, np.ndarray]:
  return results_of(
    "tests.training.run_bert_on_8_devices", tmp_path_factory.mktemp("parallel_bert")
  )


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("task", TASKS)
def test_every_mode_and_mesh_gives_the_one_device_losses_and_params(on_8_devices, task, run):
  one = lambda key: on_8_devices[f"{task}/one_device/{key}"]
  got = lambda key: on_8_devices[f"{task}/{run}/{key}"]
  np.testing.assert_allclose(got("loss"), one("loss"), rtol=1e-5)
  np.testing.assert_allclose(got("num_tokens"), one("num_tokens"))
  # All parameters but the attention key biases (see device_runs.flat_params).
  np.testing.assert_allclose(got("params"), one("params"), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("task", TASKS)
def test_the_compared_runs_move_the_parameters_far_beyond_the_tolerance(on_8_devices, task):
  moved = np.abs(on_8_devices[f"{task}/one_device/params"] - on_8_devices[f"{task}/init_params"])
  assert moved.max() > 1e-2, moved.max()  # three Adam updates of lr 1e-2
  assert np.isfinite(on_8_devices[f"{task}/one_device/loss"]).all()


# --- unequal masked counts per row ------------------------------------------------------------


@pytest.mark.parametrize("run", UNEQUAL_RUNS)
def test_with_unequal_masked_counts_every_mode_still_gives_the_one_device_run(on_8_devices, run):
  """Devices and micro-batches hold different numbers of masked tokens; every term of the loss
  is a masked-token mean (tfjax.tasks.bert_pretraining.pretraining_loss_fn), so the parts'
  token-weighted sum is exactly the whole batch's."""
  one = lambda key: on_8_devices[f"unequal/one_device/{key}"]
  got = lambda key: on_8_devices[f"unequal/{run}/{key}"]
  for key in ("loss", "mlm_loss", "nsp_loss", "nsp_accuracy"):
    np.testing.assert_allclose(got(key), one(key), rtol=1e-5, err_msg=key)
  np.testing.assert_allclose(got("params"), one("params"), rtol=1e-5, atol=1e-6)


# --- shardings of BERT's parameters -----------------------------------------------------------


def _param_paths(task: str) -> set[str]:
  from tfjax.models.bert import BertConfig, BertForPreTraining, BertForSequenceClassification

  config = BertConfig(vocab_size=64, max_len=16, num_layers=2, num_heads=2, d_model=32, d_ff=64)
  model = (
    BertForPreTraining(config)
    if task == "pretraining"
    else BertForSequenceClassification(config, num_labels=3)
  )
  tokens = jax.ShapeDtypeStruct((1, 16), jnp.int32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), tokens)["params"]
  return {path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(shapes)[0]}


@pytest.mark.parametrize("task", TASKS)
def test_every_bert_parameter_gets_its_sharding_on_a_2x2x2_mesh(on_8_devices, task):
  specs = dict(line.split("=", 1) for line in on_8_devices[f"{task}/specs"])
  assert set(specs) == _param_paths(task)
  spec = lambda *axes: str(PartitionSpec(*axes))
  head = "nsp" if task == "pretraining" else "classifier"
  expected = {
    "bert/embeddings/token_embed/embedding": spec("tensor", "fsdp"),  # (vocab, embed)
    "bert/embeddings/position_embed/embedding": spec(None, "fsdp"),
    "bert/embeddings/segment_embed/embedding": spec(None, "fsdp"),
    "bert/layer_1/self_attention/qkv/kernel": spec("fsdp", "tensor"),
    "bert/layer_1/self_attention/out/kernel": spec("tensor", "fsdp"),
    "bert/layer_1/mlp/hidden/kernel": spec("fsdp", "tensor"),
    "bert/pooler/kernel": spec("fsdp", None),  # (embed, embed): one of the two is sharded
    f"{head}/kernel": spec("fsdp", None),
    f"{head}/bias": spec(None),
  }
  if task == "pretraining":
    expected["mlm_output_bias"] = spec("tensor")
  assert {path: specs[path] for path in expected} == expected
  # ... and the 2x2x2 run holds its trained token table that way.
  assert str(on_8_devices[f"{task}/jit_tensor2/token_embed_spec"]) == spec("tensor", "fsdp")
