r"""LoRA (Hu et al. 2021) against full fine-tuning: trainable parameters and optimizer-state bytes
of the gpt_tiny and bert_tiny fine-tuning models (from shapes alone: `jax.eval_shape`, nothing
trained), and with --train the test accuracy of both on Rotten Tomatoes sentiment.

  python -m benchmarks.lora                       # the sizes, seconds
  python -m benchmarks.lora --train --models=bert # + fine-tune bert_tiny_sentiment both ways

--train needs the pre-trained workdirs the configs name (configs/bert_tiny.py ->
workdir/bert_tiny, configs/gpt_tiny_topics.py's first command -> workdir/gpt_tiny). Each run
takes about 4.5 minutes on 2 CPU cores (configs/bert_tiny_sentiment.py's budget: 300 steps of
32); its workdir is kept under --workdir, so a rerun skips finished runs. LoRA runs take
--lora_learning_rate (adapters want a larger rate than full fine-tuning: Hu et al. train
RoBERTa-base's at 4e-4 to 5e-4, Appendix D). Writes benchmarks/results/lora.json (--out_dir).
"""

import json
import math
import os
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from configs import bert_tiny_sentiment, gpt_tiny_sentiment
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
_LORA_LR = flags.DEFINE_float("lora_learning_rate", 1e-3, "Peak learning rate of LoRA runs.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Fine-tuning seeds (--train).")
_WORKDIR = flags.DEFINE_string("workdir", "workdir/lora", "Where the runs' workdirs go.")
_OUT_DIR = flags.DEFINE_string("out_dir", "benchmarks/results", "Where lora.json goes.")
_TFDS_DIR = flags.DEFINE_string("tfds_data_dir", "", "TFDS data dir ('' for the default).")

CONFIGS = {"bert": bert_tiny_sentiment, "gpt": gpt_tiny_sentiment}
NUM_LABELS = 2  # fresh / rotten


def variants() -> dict[str, dict]:
  """config.lora of each compared way to fine-tune."""
  adapters = dict(rank=_RANK.value, alpha=_ALPHA.value)
  return {
    "full": dict(rank=0),
    f"lora_r{_RANK.value}": dict(adapters, mlp=False),
    f"lora_r{_RANK.value}_mlp": dict(adapters, mlp=True),
  }


def fine_tuning_config(model: str, variant: dict, seed: int = 0):
  config = CONFIGS[model].get_config()
  config.lora.update(variant)
  config.train.seed = seed
  config.data.tfds_data_dir = _TFDS_DIR.value
  if variant["rank"]:
    config.train.learning_rate = _LORA_LR.value
  return config


def sizes(model: str, variant: dict) -> dict[str, int]:
  """Parameters, trained parameters and optimizer-state bytes of the task's model, built as
  the task builds it (its model config with config.lora, its trainable mask, its optimizer)."""
  config = fine_tuning_config(model, variant)
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


def trained(model: str, name: str, variant: dict, seed: int) -> dict:
  workdir = os.path.join(_WORKDIR.value, f"{model}-{name}-seed{seed}")
  done = os.path.join(workdir, "final_metrics.json")
  began = time.perf_counter()
  if not os.path.exists(done):
    registry.train(fine_tuning_config(model, variant, seed), workdir)
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
    print("\n| model | fine-tuning | seed | test accuracy | majority class |")
    print("|---|---|---:|---:|---:|")
    for model in _MODELS.value:
      for name, variant in list(variants().items())[:2]:  # full, and LoRA on attention
        for seed in map(int, _SEEDS.value):
          final = trained(model, name, variant, seed)
          results[f"{model}/{name}/seed{seed}"] = final
          print(
            f"| {model}_tiny | {name} | {seed} | {final['test_accuracy']:.3f} | "
            f"{final['test_majority_class_accuracy']:.3f} |"
          )
  os.makedirs(_OUT_DIR.value, exist_ok=True)
  with open(os.path.join(_OUT_DIR.value, "lora.json"), "w") as f:
    json.dump({"flags": {"rank": _RANK.value, "alpha": _ALPHA.value}, **results}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
