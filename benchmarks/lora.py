r"""LoRA (Hu et al. 2021) against full fine-tuning: trainable parameters and optimizer-state bytes
of the gpt_tiny and bert_tiny fine-tuning models (from shapes alone: `jax.eval_shape`, nothing
trained, on the sentiment configs), and with --train the test accuracy of both ways on Rotten
Tomatoes sentiment (which pre-training does not help at this scale: README, GPT vs BERT) and
the 11 Wikipedia topics (which it does).

  python -m benchmarks.lora                                    # the sizes, seconds
  python -m benchmarks.lora --train --models=gpt --tasks=topics  # + fine-tune both ways

--train needs the pre-trained workdirs the configs name (configs/bert_tiny.py ->
workdir/bert_tiny, configs/gpt_tiny_topics.py's first command -> workdir/gpt_tiny). Each run
takes 4-15 minutes on one core (the configs' budget: 300 steps of 32); its workdir is kept
under --workdir, so a rerun skips finished runs. LoRA runs at each of --lora_learning_rates
(adapters want a larger rate than full fine-tuning: Hu et al. train RoBERTa-base's at 4e-4 to
5e-4 for tens of epochs, Appendix D; here 300 steps of 32, about one epoch). Writes
benchmarks/results/lora.json (--out_dir).
"""

import itertools
import json
import math
import os
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from configs import bert_tiny_sentiment, bert_tiny_topics, gpt_tiny_sentiment, gpt_tiny_topics
from tfjax.models.bert import BertForSequenceClassification
from tfjax.models.gpt import GPTForFineTuning
from tfjax.nn import lora
from tfjax.tasks import registry
from tfjax.tasks.gpt_fine_tuning import NUM_ADDED_TOKENS
from tfjax.training import optimizer

_MODELS = flags.DEFINE_list("models", ["bert", "gpt"], "Which fine-tuning configs.")
_RANK = flags.DEFINE_integer("rank", 8, "LoRA rank r.")
_ALPHA = flags.DEFINE_float("alpha", 16.0, "LoRA alpha (the adapters are scaled by alpha / r).")
_TRAIN = flags.DEFINE_bool("train", False, "Also fine-tune both ways and compare test accuracy.")
_LORA_LRS = flags.DEFINE_list(
  "lora_learning_rates", ["1e-3", "5e-3"], "Peak learning rates of the LoRA runs (--train)."
)
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Fine-tuning seeds (--train).")
_WORKDIR = flags.DEFINE_string("workdir", "workdir/lora", "Where the runs' workdirs go.")
_OUT_DIR = flags.DEFINE_string("out_dir", "benchmarks/results", "Where lora.json goes.")
_TFDS_DIR = flags.DEFINE_string("tfds_data_dir", "", "TFDS data dir ('' for the default).")

CONFIGS = {  # task -> model -> its fine-tuning config
  "sentiment": {"bert": bert_tiny_sentiment, "gpt": gpt_tiny_sentiment},
  "topics": {"bert": bert_tiny_topics, "gpt": gpt_tiny_topics},
}
_TASKS = flags.DEFINE_list("tasks", ["sentiment", "topics"], f"Fine-tuning tasks: {list(CONFIGS)}.")
NUM_LABELS = 2  # the sizes are the sentiment configs': fresh / rotten


def variants() -> dict[str, dict]:
  """config.lora of each compared way to fine-tune."""
  adapters = dict(rank=_RANK.value, alpha=_ALPHA.value)
  return {
    "full": dict(rank=0),
    f"lora_r{_RANK.value}": dict(adapters, mlp=False),
    f"lora_r{_RANK.value}_mlp": dict(adapters, mlp=True),
  }


def fine_tuning_config(
  model: str, variant: dict, seed: int = 0, learning_rate: float | None = None, task="sentiment"
):
  """The model's config for `task` with config.lora = `variant` (and a LoRA run's peak rate)."""
  config = CONFIGS[task][model].get_config()
  config.lora.update(variant)
  config.train.seed = seed
  config.data.tfds_data_dir = _TFDS_DIR.value
  if learning_rate is not None:
    config.train.learning_rate = learning_rate
  return config


def sizes(model: str, variant: dict) -> dict[str, int]:
  """Parameters, trained parameters and optimizer-state bytes of the task's model, built as
  the task builds it (its model config with config.lora, its trainable mask, its optimizer)."""
  config = fine_tuning_config(model, variant)  # sentiment
  task = registry.make_task(config)
  cfg = task.model_config  # the configured architecture (bert_tiny's / gpt_tiny's)
  length = config.data.max_seq_len
  if model == "bert":
    module = BertForSequenceClassification(cfg, num_labels=NUM_LABELS)
    inputs = (jax.ShapeDtypeStruct((1, length), jnp.int32),)
  else:
    module = GPTForFineTuning(cfg.replace(vocab_size=cfg.vocab_size + NUM_ADDED_TOKENS), NUM_LABELS)
    inputs = (jax.ShapeDtypeStruct((1, 1, length), jnp.int32),)
    inputs += (jax.ShapeDtypeStruct((1, 1), jnp.int32),)
  params = jax.eval_shape(module.init, jax.random.key(0), *inputs)["params"]
  trainable = task.trainable()
  tx, _ = optimizer.make_optimizer(config.train, cfg.d_model, trainable=trainable)
  state = jax.eval_shape(tx.init, params)
  state_bytes = sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(state))
  return {
    "params": lora.count(params),
    "base_params": lora.count(lora.base_params(params)),
    "trainable_params": lora.count(params, trainable),
    "optimizer_state_bytes": state_bytes,
  }


def trained(task: str, model: str, name: str, variant: dict, seed: int, learning_rate) -> dict:
  workdir = os.path.join(_WORKDIR.value, f"{task}-{model}-{name}-seed{seed}")
  done = os.path.join(workdir, "final_metrics.json")
  began = time.perf_counter()
  if not os.path.exists(done):
    registry.train(fine_tuning_config(model, variant, seed, learning_rate, task), workdir)
  with open(done) as f:
    return {**json.load(f), "seconds_this_call": time.perf_counter() - began}


def main(argv: list[str]) -> None:
  del argv
  results = {}
  print("| model | fine-tuning | parameters | trained | trained % | optimizer state |")
  print("|---|---|---:|---:|---:|---:|")
  for model in _MODELS.value:
    full = None
    for name, variant in variants().items():
      row = sizes(model, variant)
      full = full or row
      results[f"{model}/{name}"] = row
      share = 100 * row["trainable_params"] / row["base_params"]
      ratio = full["optimizer_state_bytes"] / row["optimizer_state_bytes"]
      less = f" ({ratio:.0f}x less)" if row is not full else ""
      print(
        f"| {model}_tiny | {name} | {row['params']:,} | {row['trainable_params']:,} | "
        f"{share:.2f} | {row['optimizer_state_bytes']:,} B{less} |"
      )
  if _TRAIN.value:
    print("\n| task | model | fine-tuning | peak lr | seed | test accuracy | most frequent label |")
    print("|---|---|---|---:|---:|---:|---:|")
    full, adapters = list(variants().items())[:2]  # full, and LoRA on the attention
    runs = [(*full, None)] + [(*adapters, float(lr)) for lr in _LORA_LRS.value]
    for task, model in itertools.product(_TASKS.value, _MODELS.value):
      for name, variant, learning_rate in runs:
        label = name if learning_rate is None else f"{name}_lr{learning_rate:g}"
        rate = learning_rate or CONFIGS[task][model].get_config().train.learning_rate
        for seed in map(int, _SEEDS.value):
          final = trained(task, model, label, variant, seed, learning_rate)
          results[f"{task}/{model}/{label}/seed{seed}"] = final
          print(
            f"| {task} | {model}_tiny | {name} | {rate:g} | {seed} | "
            f"{final['test_accuracy']:.3f} | {final['test_majority_class_accuracy']:.3f} |"
          )
  os.makedirs(_OUT_DIR.value, exist_ok=True)
  with open(os.path.join(_OUT_DIR.value, "lora.json"), "w") as f:
    json.dump({"flags": {"rank": _RANK.value, "alpha": _ALPHA.value}, **results}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
