"""Tiny BERT pre-training and classification on 8 simulated CPU devices, in every parallel mode
and mesh; writes .npz.

Started by tests/training/test_parallel_bert.py in a subprocess (the device count must be set
before JAX starts): `python -m tests.training.run_bert_on_8_devices OUT.npz`. Each run takes the
same global batches and seed; the test compares losses and final parameters with the one-device
run (also with unequal masked counts per device), and reads the parameter shardings of
the 2 x 2 x 2 (data x fsdp x tensor) mesh.
"""

import os
import sys
import time

# The last two flags cut XLA's CPU compile time about 3x (14 steps compile here): the test
# compares partitionings, and the one-device reference is compiled the same way.
os.environ["XLA_FLAGS"] = " ".join(
  (
    "--xla_force_host_platform_device_count=8",
    "--xla_backend_optimization_level=0",
    "--xla_cpu_use_fusion_emitters=false",
  )
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from tests.training.device_runs import (  # noqa: E402
  RUNS,
  flat_params,
  shardings_on_2x2x2,
  start,
  train,
)
from tfjax.models import bert  # noqa: E402
from tfjax.models.bert import (  # noqa: E402
  BertConfig,
  BertForPreTraining,
  BertForSequenceClassification,
)
from tfjax.tasks.bert_pretraining import pretraining_loss_fn  # noqa: E402
from tfjax.tasks.classification import classification_loss_fn  # noqa: E402
from tfjax.training import optimizer, sharding  # noqa: E402
from tfjax.training.parallel import Parallel  # noqa: E402
from tfjax.training.state import TrainState  # noqa: E402

MODEL = BertConfig(
  vocab_size=64, max_len=16, num_layers=2, num_heads=2, d_model=32, d_ff=64,
  dropout_rate=0.0, attention_dropout_rate=0.0,
)  # fmt: skip
NUM_LABELS = 3
# warmup_steps=1: the first update has learning rate 0. Adam's first step lr * g / (|g| + eps)
# is steep where |g| is near eps = 1e-8; with a full first step, rounding differences there
# move a few weights by ~1e-5 (measured), above the tolerance. Later steps average g into m, v.
TRAIN = dict(learning_rate=1e-2, warmup_steps=1, num_steps=100, weight_decay=0.01,
             grad_clip_norm=1.0)  # fmt: skip
BATCH, SEQ, PREDICTIONS, STEPS = 16, 16, 4, 4
PAD, CLS, SEP, MASK, FIRST_WORD = 0, 1, 2, 3, 4

# Unequal masked counts per row: the modes that split the loss into parts (and sharded jit).
UNEQUAL_RUNS = ("one_device", "jit_data8", "shard_map", "pmap", "jit_data8_accum2")


# ------------------------------------------------------------------------------ data


def _sentence_pairs(rng: np.random.Generator) -> dict[str, np.ndarray]:
  """[CLS] A [SEP] B [SEP] [PAD]...: words count up by a stride of 1 to 3 per row; B continues A
  (label 0, IsNext) or starts elsewhere (label 1, NotNext). Lengths 10 to 16."""
  words = MODEL.vocab_size - FIRST_WORD
  lengths = rng.integers(10, SEQ + 1, BATCH)
  split = lengths // 2  # position of the first [SEP]
  start = rng.integers(0, words, (BATCH, 1))
  stride = rng.integers(1, 4, (BATCH, 1))
  label = rng.integers(0, 2, BATCH).astype(np.int32)
  position = np.arange(SEQ)[None]
  offset = np.where(position > split[:, None], label[:, None] * rng.integers(5, 50, (BATCH, 1)), 0)
  tokens = FIRST_WORD + (start + stride * position + offset) % words
  tokens[:, 0] = CLS
  tokens[np.arange(BATCH), split] = SEP
  tokens[np.arange(BATCH), lengths - 1] = SEP
  tokens = np.where(position < lengths[:, None], tokens, PAD).astype(np.int32)
  return {
    "tokens": tokens,
    "segment_ids": ((position > split[:, None]) & (position < lengths[:, None])).astype(np.int32),
    "attention_mask": (position < lengths[:, None]).astype(np.int32),
    "next_sentence_label": label,
    "stride": stride[:, 0],
  }


def pretraining_batches(num: int, equal_counts: bool) -> list[dict[str, np.ndarray]]:
  """MLM + NSP batches as tfjax.data.pretraining makes them: PREDICTIONS slots per row, the
  unused ones position 0, id 0, weight 0. equal_counts: 3 masked words in every row; else 1 to 4.
  """
  rng = np.random.default_rng(0)
  out = []
  for _ in range(num):
    pairs = _sentence_pairs(rng)
    tokens = pairs["tokens"]
    counts = np.full(BATCH, 3) if equal_counts else rng.integers(1, PREDICTIONS + 1, BATCH)
    positions = np.zeros((BATCH, PREDICTIONS), np.int32)
    masked = tokens.copy()
    for row in range(BATCH):
      words = np.flatnonzero(tokens[row] >= FIRST_WORD)
      chosen = np.sort(rng.choice(words, counts[row], replace=False))
      positions[row, : counts[row]] = chosen
      masked[row, chosen] = MASK
    weights = (np.arange(PREDICTIONS)[None] < counts[:, None]).astype(np.float32)
    ids = np.where(weights > 0, np.take_along_axis(tokens, positions, 1), 0).astype(np.int32)
    out.append(
      {
        "tokens": masked,
        "segment_ids": pairs["segment_ids"],
        "attention_mask": pairs["attention_mask"],
        "masked_positions": positions,
        "masked_ids": ids,
        "masked_weights": weights,
        "next_sentence_label": pairs["next_sentence_label"],
      }
    )
  return out


def classification_batches(num: int) -> list[dict[str, np.ndarray]]:
  """Label: the stride (0 to 2). About a fifth of the rows are padding (weight 0), so the
  devices' parts hold different numbers of examples, some none."""
  rng = np.random.default_rng(1)
  out = []
  for _ in range(num):
    pairs = _sentence_pairs(rng)
    weights = (rng.random(BATCH) > 0.2).astype(np.float32)
    weights[0] = 1.0
    out.append(
      {
        "tokens": pairs["tokens"],
        "segment_ids": pairs["segment_ids"],
        "attention_mask": pairs["attention_mask"],
        "label": (pairs["stride"] - 1).astype(np.int32),
        "weights": weights,
      }
    )
  return out


# ------------------------------------------------------------------------------ runs


def model_for(task: str, act_sharding=None):
  if task == "pretraining":
    return BertForPreTraining(MODEL, activation_sharding=act_sharding)
  return BertForSequenceClassification(
    MODEL, num_labels=NUM_LABELS, activation_sharding=act_sharding
  )


def loss_fn_for(task: str, act_sharding=None):
  model = model_for(task, act_sharding)
  return pretraining_loss_fn(model) if task == "pretraining" else classification_loss_fn(model)


def init_fn(task: str):
  tx, _ = optimizer.make_optimizer(TRAIN)
  init_rng, state_rng = jax.random.split(jax.random.PRNGKey(0))

  def init_state() -> TrainState:
    params = model_for(task).init(init_rng, jnp.zeros((1, SEQ), jnp.int32))["params"]
    return TrainState.create(params, tx, state_rng)

  return init_state


def make(task: str, mode: str, mesh_config: dict, devices=None, grad_accum_steps: int = 1):
  tx, schedule = optimizer.make_optimizer(TRAIN)
  mesh = sharding.make_mesh(mesh_config, devices)
  return Parallel(
    mode,
    mesh,
    sharding.DEFAULT_RULES,
    init_fn=init_fn(task),
    loss_fn=loss_fn_for(task, sharding.activation_sharding(mode, mesh)),
    optimizer=tx,
    schedule=schedule,
    grad_accum_steps=grad_accum_steps,
    param_axes=bert.PARAM_AXES,
  )


def main(out_path: str) -> None:
  assert jax.device_count() == 8, jax.devices()
  results = {}
  datasets = {
    "pretraining": pretraining_batches(STEPS, equal_counts=True),
    "classification": classification_batches(STEPS),
    # The same shapes: these runs reuse the pre-training runs' compiled steps.
    "unequal": pretraining_batches(STEPS, equal_counts=False),
  }
  for task in ("pretraining", "classification"):
    host_state = jax.device_get(jax.jit(init_fn(task))())
    results[f"{task}/init_params"] = flat_params(host_state.params)
    for name, (mode, mesh_config, num_devices, accum) in RUNS.items():
      began = time.perf_counter()
      devices = jax.devices()[:num_devices] if num_devices else None
      parallel = make(task, mode, mesh_config, devices, accum)
      for prefix in (task, "unequal"):
        if prefix == "unequal" and (task != "pretraining" or name not in UNEQUAL_RUNS):
          continue
        metrics, state = train(parallel, start(parallel, host_state), datasets[prefix])
        for key, values in metrics.items():
          results[f"{prefix}/{name}/{key}"] = values
        results[f"{prefix}/{name}/params"] = flat_params(parallel.to_saved(state).params)
        if name == "jit_tensor2" and prefix == task:
          embedding = state.params["bert"]["embeddings"]["token_embed"]["embedding"]
          results[f"{task}/{name}/token_embed_spec"] = np.array(str(embedding.sharding.spec))
      results[f"{task}/{name}/seconds"] = np.array(time.perf_counter() - began)
    results[f"{task}/specs"] = shardings_on_2x2x2(init_fn(task), bert.PARAM_AXES)

  np.savez(out_path, **{k: np.asarray(v) for k, v in results.items()})


if __name__ == "__main__":
  main(sys.argv[1])
