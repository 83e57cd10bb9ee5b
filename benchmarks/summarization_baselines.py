r"""The floor a summariser must clear: ROUGE-1/2/L of model-free summaries on the test split of
each summarisation dataset (tfjax/data/summaries.py), no model, a few seconds:

  python -m benchmarks.summarization_baselines

  lead-N                the article's first N words, N = the mean reference length in words
                        on the train split (tfjax/tasks/summary_baselines.py says why)
  random other summary  the reference of another test example (a seeded derangement)

ROUGE is google-research's rouge-score with the Porter stemmer, the mean of per-example
F-measures x100 (tfjax/tasks/text_metrics.py). bigbench/gem_xsum needs the BIG-bench archive in
TFDS's manual dir; without it the dataset is skipped with one line giving the download command.
Writes benchmarks/results/summarization_baselines.{json,md} (--out_dir): dataset statistics and
scores only, no text of the datasets.
"""

import json
import os

from absl import app, flags

from tfjax.data import summaries
from tfjax.tasks import summary_baselines, text_metrics

_OUT_DIR = flags.DEFINE_string("out_dir", "benchmarks/results", "Where the results go.")
_TFDS_DIR = flags.DEFINE_string("tfds_data_dir", "", "TFDS data dir ('' for the default).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random-other-summary derangement.")

NAMES = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L"}


def measure(name: str, data_dir: str | None, seed: int) -> dict:
  """Pair counts per split, lead-N's N, and each baseline's test ROUGE for one dataset."""
  splits = summaries.read_splits(name, data_dir)
  train, test = splits["train"], splits["test"]
  n = summary_baselines.mean_words(train.responses)
  return {
    "pairs": {split: len(p) for split, p in splits.items()},
    "dropped_empty": {split: p.dropped for split, p in splits.items()},
    "lead_n": n,
    "mean_words": {
      "train_prompt": sum(len(t.split()) for t in train.prompts) / len(train),
      "train_response": sum(len(t.split()) for t in train.responses) / len(train),
    },
    "test_rouge": summary_baselines.baseline_rouge(
      train.responses, test.prompts, test.responses, seed=seed, lead_n=n
    ),
  }


def table(results: dict, skipped: dict) -> str:
  lines = [
    "| dataset (test pairs) | baseline | " + " | ".join(NAMES.values()) + " |",
    "|---" * (2 + len(NAMES)) + "|",
  ]
  for name, r in results.items():
    for baseline, scores in r["test_rouge"].items():
      cells = " | ".join(f"{scores[k]:.1f}" for k in NAMES)
      lines.append(f"| {name} ({r['pairs']['test']:,}) | {baseline} | {cells} |")
  for name in skipped:
    lines.append(f"| {name} | skipped: its source files are missing |" + " |" * len(NAMES))
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  del argv
  results, skipped = {}, {}
  for name in summaries.FIELDS:
    try:
      results[name] = measure(name, _TFDS_DIR.value or None, _SEED.value)
    except FileNotFoundError as e:
      skipped[name] = str(e)
      print(f"skipped {name}: {e}")
  os.makedirs(_OUT_DIR.value, exist_ok=True)
  stem = os.path.join(_OUT_DIR.value, "summarization_baselines")
  with open(stem + ".json", "w") as f:
    meta = {
      "rouge": "rouge-score, use_stemmer=True; mean of per-example F-measure x100",
      "rouge_types": list(text_metrics.ROUGE_TYPES),
      "seed": _SEED.value,
    }
    json.dump({**meta, "datasets": results, "skipped": sorted(skipped)}, f, indent=2)
    f.write("\n")
  markdown = table(results, skipped)
  with open(stem + ".md", "w") as f:
    f.write(markdown + "\n")
  print(markdown)
  print(f"wrote {stem}.json, .md; ROUGE F-measures x100 on the test split")


if __name__ == "__main__":
  app.run(main)
