"""GPT-1-style fine-tuning (multiple choice and classification, L = L_task + lm_coef * L_LM) on
8 simulated CPU devices, in every parallel mode and mesh; writes .npz.

Started by tests/training/test_parallel_gpt_fine_tuning.py in a subprocess (the device count
must be set before JAX starts): `python -m tests.training.run_gpt_fine_tuning_on_8_devices
OUT.npz`. Each run takes the same global batches (sequences of different lengths packed by
tfjax.data.gpt_inputs, a fifth of the examples weighted 0, so the devices hold different numbers
of examples and real tokens) and seed; the test compares losses and final parameters with the
one-device run, and reads the parameter shardings of the 2 x 2 x 2 (data x fsdp x tensor) mesh.
"""

import os
import sys
import time

# As run_bert_on_8_devices.py: the last two flags cut XLA's CPU compile time about 3x.
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
from tfjax.data import gpt_inputs  # noqa: E402
from tfjax.models.gpt import FINE_TUNING_PARAM_AXES, GPTConfig, GPTForFineTuning  # noqa: E402
from tfjax.tasks.gpt_fine_tuning import fine_tuning_loss_fn  # noqa: E402
from tfjax.training import optimizer, sharding  # noqa: E402
from tfjax.training.parallel import Parallel  # noqa: E402
from tfjax.training.state import TrainState  # noqa: E402

PAD, WORDS = 0, 29  # words 1..28; start, delimiter, extract appended after them (ids 29-31)
SPECIAL = gpt_inputs.SpecialTokens.after_vocab(WORDS)
TINY = dict(vocab_size=WORDS + 3, num_layers=2, num_heads=2, d_model=16, d_ff=32,
            dropout_rate=0.0, attention_dropout_rate=0.0)  # fmt: skip
# GPT-1 (post-LN, no residual init scaling), init_std 0.1: a fine-tuned GPT starts pre-trained.
# At N(0, 0.02) in d_model=16 the first layer reads embeddings of ~0.02 (no LayerNorm before
# it) and attends uniformly: its query and key kernels get gradients of ~4e-10, below Adam's
# eps, where the rounding of those cancelling sums (~1e-5 relative) moved weights by 0.94 of
# the tolerance (measured); with 0.1, by at most half of it.
GPT1 = GPTConfig(**TINY, max_len=12, pre_norm=False, scale_residual_init=False, init_std=0.1)
GPT2 = GPTConfig(**TINY, max_len=16, pre_norm=True)  # pre-LN, final LayerNorm
# task: (model config, num_outputs, combine, sequences per example, sequence length)
TASKS = {
  "multiple_choice": (GPT1, 1, "choices", 3, 12),
  "classification": (GPT2, 3, "sum", 1, 16),
}
LM_COEF = 0.5  # GPT-1 §4.1
# warmup_steps=1 as run_bert_on_8_devices.py: the first update has learning rate 0.
TRAIN = dict(learning_rate=1e-2, warmup_steps=1, num_steps=100, weight_decay=0.01,
             grad_clip_norm=1.0)  # fmt: skip
BATCH, STEPS = 16, 4


# ------------------------------------------------------------------------------ data


def _progression(rng: np.random.Generator, length: int, stride: int) -> list[int]:
  """`length` words counting up by `stride` (mod the vocabulary) from a random one."""
  first = rng.integers(0, WORDS - 1)
  return [1 + (first + stride * i) % (WORDS - 1) for i in range(length)]


def _multiple_choice(rng: np.random.Generator) -> tuple[list[list[int]], int]:
  """A context of 2 to 5 words counting up by 1 to 3; the right answer (1 to 3 words) goes on
  counting, the two others start elsewhere. Sequences of 5 to 11 tokens."""
  length, stride = rng.integers(2, 6), rng.integers(1, 4)
  context = _progression(rng, length + 3, stride)
  label = int(rng.integers(0, 3))
  answers = [_progression(rng, rng.integers(1, 4), stride) for _ in range(3)]
  answers[label] = context[length : length + rng.integers(1, 4)]
  return gpt_inputs.multiple_choice_sequences(context[:length], answers, SPECIAL, 12), label


def _classification(rng: np.random.Generator) -> tuple[list[list[int]], int]:
  """3 to 14 words counting up by 1 to 3; the label is the stride (0 to 2). 5 to 16 tokens."""
  stride = int(rng.integers(1, 4))
  text = _progression(rng, rng.integers(3, 15), stride)
  return [gpt_inputs.classification_sequence(text, SPECIAL, 16)], stride - 1


def batches(task: str, num: int) -> list[dict[str, np.ndarray]]:
  """Batches as tfjax.data.gpt_fine_tuning makes them: tokens [b, c, t], extract_positions
  [b, c], lm_weights [b, c, t], label [b], weights [b] (a fifth 0; row 0 always 1)."""
  example = _multiple_choice if task == "multiple_choice" else _classification
  length = TASKS[task][4]
  rng = np.random.default_rng(0)
  out = []
  for _ in range(num):
    rows, labels = [], []
    for _ in range(BATCH):
      sequences, label = example(rng)
      rows.append(gpt_inputs.pack(sequences, length, PAD))
      labels.append(label)
    batch = {k: np.stack([row[k] for row in rows]) for k in rows[0]}
    weights = (rng.random(BATCH) > 0.2).astype(np.float32)
    weights[0] = 1.0
    out.append({**batch, "label": np.array(labels, np.int32), "weights": weights})
  return out


# ------------------------------------------------------------------------------ runs


def model_for(task: str, act_sharding=None) -> GPTForFineTuning:
  config, num_outputs, combine, _, _ = TASKS[task]
  return GPTForFineTuning(
    config,
    num_outputs=num_outputs,
    combine=combine,
    classifier_dropout_rate=0.0,
    activation_sharding=act_sharding,
  )


def init_fn(task: str):
  tx, _ = optimizer.make_optimizer(TRAIN)
  init_rng, state_rng = jax.random.split(jax.random.PRNGKey(0))
  _, _, _, choices, length = TASKS[task]

  def init_state() -> TrainState:
    tokens = jnp.zeros((1, choices, length), jnp.int32)
    params = model_for(task).init(init_rng, tokens, jnp.zeros((1, choices), jnp.int32))["params"]
    return TrainState.create(params, tx, state_rng)

  return init_state


def compared(task: str, params) -> np.ndarray:
  """flat_params, without the multiple-choice classifier bias: it adds the same to every
  answer's logit, which the softmax over the answers cancels, so (as an attention key bias,
  see device_runs.flat_params) its true gradient is 0 and Adam scales its rounding noise up to
  steps of ~lr of either sign (measured: runs ended up to 9e-3 apart after 4 steps)."""
  if TASKS[task][2] == "choices":
    params = {**params, "classifier": {"kernel": params["classifier"]["kernel"]}}
  return flat_params(params)


def make(task: str, mode: str, mesh_config: dict, devices=None, grad_accum_steps: int = 1):
  tx, schedule = optimizer.make_optimizer(TRAIN)
  mesh = sharding.make_mesh(mesh_config, devices)
  model = model_for(task, sharding.activation_sharding(mode, mesh))
  return Parallel(
    mode,
    mesh,
    sharding.DEFAULT_RULES,
    init_fn=init_fn(task),
    loss_fn=fine_tuning_loss_fn(model, LM_COEF, regression=False),
    optimizer=tx,
    schedule=schedule,
    grad_accum_steps=grad_accum_steps,
    param_axes=FINE_TUNING_PARAM_AXES,
  )


def main(out_path: str) -> None:
  assert jax.device_count() == 8, jax.devices()
  results = {}
  for task in TASKS:
    data = batches(task, STEPS)
    results[f"{task}/weights"] = np.array([b["weights"] for b in data])  # [steps, b]
    results[f"{task}/real_tokens"] = np.array([b["lm_weights"].sum((1, 2)) for b in data])
    host_state = jax.device_get(jax.jit(init_fn(task))())
    results[f"{task}/init_params"] = compared(task, host_state.params)
    for name, (mode, mesh_config, num_devices, accum) in RUNS.items():
      began = time.perf_counter()
      devices = jax.devices()[:num_devices] if num_devices else None
      parallel = make(task, mode, mesh_config, devices, accum)
      metrics, state = train(parallel, start(parallel, host_state), data)
      for key, values in metrics.items():
        results[f"{task}/{name}/{key}"] = values
      results[f"{task}/{name}/params"] = compared(task, parallel.to_saved(state).params)
      if name == "jit_tensor2":  # the trained state is held as the specs say
        trained = {
          "classifier/kernel": state.params["classifier"]["kernel"],
          "gpt/token_embed/embedding": state.params["gpt"]["token_embed"]["embedding"],
        }
        for path, leaf in trained.items():
          results[f"{task}/{name}/{path}/spec"] = np.array(str(leaf.sharding.spec))
      results[f"{task}/{name}/seconds"] = np.array(time.perf_counter() - began)
    results[f"{task}/specs"] = shardings_on_2x2x2(init_fn(task), FINE_TUNING_PARAM_AXES)
  np.savez(out_path, **{k: np.asarray(v) for k, v in results.items()})


if __name__ == "__main__":
  main(sys.argv[1])
