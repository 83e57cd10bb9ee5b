r"""The lecture's GPT vs BERT slide, measured: a left-to-right LM fine-tuned with GPT-1's input
transformations against a bidirectional encoder fine-tuned as BERT is, on the same tasks.

Our gpt_tiny and bert_tiny: the same corpus (wiki_vital_articles' train split), the same size
(4 layers, d_model 256, 4 heads, d_ff 1024, 8,192 sentencepiece pieces) and the same
pre-training tokens (1,500 steps of 32 x 128). Each is fine-tuned with the same budget and
optimizer on topics (wiki_topics), sentiment (rotten_tomatoes), entailment (BIG-bench
epistemic_reasoning: the optional archive, see configs/gpt_tiny_entailment.py) and multiple
choice (wiki_next_sentence), from its pre-trained weights and from scratch, two seeds each;
GPT also without the auxiliary LM loss (lm_coef = 0) on --no_lm_tasks. Pre-train both first:

  python -m train.train --config=configs/gpt_tiny.py --workdir=workdir/gpt_tiny \
      --config.train.batch_size=32 --config.train.num_steps=1500 --config.train.warmup_steps=150
  python -m train.train --config=configs/bert_tiny.py --workdir=workdir/bert_tiny
  python -m benchmarks.gpt_vs_bert --workdir=workdir/gpt_vs_bert

Each run's workdir is kept: a rerun skips finished runs (and resumes an interrupted one), so the
sweep can be stopped and started again, or split over processes (`--rows`, `--tasks`, pinned
with `taskset -c`). Writes benchmarks/results/gpt_vs_bert.{json,md} (--out_dir).
"""

import json
import os
import statistics

from absl import app, flags

from configs import (
  bert_tiny_choice,
  bert_tiny_entailment,
  bert_tiny_sentiment,
  bert_tiny_topics,
  gpt_tiny_choice,
  gpt_tiny_entailment,
  gpt_tiny_sentiment,
  gpt_tiny_topics,
)
from tfjax.tasks import registry

_WORKDIR = flags.DEFINE_string("workdir", "workdir/gpt_vs_bert", "Where the runs' workdirs go.")
_OUT_DIR = flags.DEFINE_string("out_dir", "benchmarks/results", "Where the results go.")
_GPT = flags.DEFINE_string("gpt_checkpoint", "workdir/gpt_tiny", "The pre-trained gpt_tiny.")
_BERT = flags.DEFINE_string("bert_checkpoint", "workdir/bert_tiny", "The pre-trained bert_tiny.")
_TASKS = flags.DEFINE_list("tasks", ["topics", "sentiment", "entailment", "choice"], "Tasks.")
_ROWS = flags.DEFINE_list(
  "rows", ["gpt", "gpt_no_lm", "gpt_scratch", "bert", "bert_scratch"], "Which models."
)
_NO_LM_TASKS = flags.DEFINE_list("no_lm_tasks", ["entailment"], "Tasks of gpt_no_lm.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1"], "Fine-tuning seeds (head init, data order).")
_TFDS_DIR = flags.DEFINE_string("tfds_data_dir", "", "TFDS data dir ('' for the default).")

CONFIGS = {
  "gpt": {
    "topics": gpt_tiny_topics,
    "sentiment": gpt_tiny_sentiment,
    "entailment": gpt_tiny_entailment,
    "choice": gpt_tiny_choice,
  },
  "bert": {
    "topics": bert_tiny_topics,
    "sentiment": bert_tiny_sentiment,
    "entailment": bert_tiny_entailment,
    "choice": bert_tiny_choice,
  },
}
# The budget of every run: 300 updates of 32 examples (multiple choice: 200 of 32 questions x 4
# answers); tokens per text cut to the same length for both models.
STEPS = {"topics": 300, "sentiment": 300, "entailment": 300, "choice": 200}
MAX_SEQ_LEN = {"topics": 64, "sentiment": 64, "entailment": 64, "choice": 48}
ROW_NAMES = {
  "gpt": "GPT (pre-trained, L_task + 0.5 L_LM)",
  "gpt_no_lm": "GPT (pre-trained, L_task alone)",
  "gpt_scratch": "GPT (from scratch)",
  "bert": "BERT (pre-trained)",
  "bert_scratch": "BERT (from scratch)",
}
TASK_NAMES = {
  "topics": "topics (11 classes)",
  "sentiment": "sentiment (2)",
  "entailment": "entailment (2)",
  "choice": "next sentence (4 choices)",
}


def run_config(row: str, task: str, seed: int):
  model = row.split("_")[0]
  config = CONFIGS[model][task].get_config()
  steps = STEPS[task]
  config.init.update(
    checkpoint=_GPT.value if model == "gpt" else _BERT.value,
    load_weights=not row.endswith("scratch"),
  )
  config.data.update(tfds_data_dir=_TFDS_DIR.value, max_seq_len=MAX_SEQ_LEN[task])
  config.train.update(
    seed=seed,
    num_steps=steps,
    warmup_steps=steps // 10,
    eval_every=steps,
    checkpoint_every=steps // 2,
  )
  if row == "gpt_no_lm":
    config.fine_tuning.lm_coef = 0.0
  return config


def final_metrics(row: str, task: str, seed: int) -> dict:
  workdir = os.path.join(_WORKDIR.value, f"{row}-{task}-seed{seed}")
  done = os.path.join(workdir, "final_metrics.json")
  if not os.path.exists(done):
    registry.train(run_config(row, task, seed), workdir)
  with open(done) as f:
    return json.load(f)


def cell(values: list[float]) -> str:
  if not values:
    return "—"
  return f"{statistics.mean(values):.3f} ({', '.join(f'{v:.3f}' for v in values)})"


def table(results: dict, tasks: list[str]) -> str:
  lines = [
    "| model | " + " | ".join(TASK_NAMES[t] for t in tasks) + " |",
    "|---" * (len(tasks) + 1) + "|",
  ]
  for row, by_task in results["test_accuracy"].items():
    lines.append(
      f"| {ROW_NAMES[row]} | " + " | ".join(cell(by_task.get(t, [])) for t in tasks) + " |"
    )
  baselines = results["baseline"]
  lines.append(
    "| most frequent training label (answer position) | "
    + " | ".join(f"{baselines[t]:.3f}" if t in baselines else "—" for t in tasks)
    + " |"
  )
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  del argv
  seeds, tasks = [int(s) for s in _SEEDS.value], _TASKS.value
  results: dict = {"test_accuracy": {}, "baseline": {}, "seeds": seeds}
  for row in _ROWS.value:
    row_tasks = [t for t in tasks if row != "gpt_no_lm" or t in _NO_LM_TASKS.value]
    results["test_accuracy"][row] = {}
    for task in row_tasks:
      finals = [final_metrics(row, task, seed) for seed in seeds]
      results["test_accuracy"][row][task] = [f["test_accuracy"] for f in finals]
      results["baseline"][task] = finals[0]["test_majority_class_accuracy"]
  results["budget"] = {"steps": STEPS, "batch_size": 32, "max_seq_len": MAX_SEQ_LEN}
  os.makedirs(_OUT_DIR.value, exist_ok=True)
  stem = os.path.join(_OUT_DIR.value, "gpt_vs_bert")
  with open(stem + ".json", "w") as f:
    json.dump(results, f, indent=1)
  markdown = table(results, tasks)
  with open(stem + ".md", "w") as f:
    f.write(markdown + "\n")
  print(markdown)
  print(f"wrote {stem}.json, .md; test accuracy, mean over seeds, each seed in parentheses")


if __name__ == "__main__":
  app.run(main)
