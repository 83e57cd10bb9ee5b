r"""The lecture's claim, measured: "vision transformers need a higher level of data and training
effort; CNNs may provide better performance on models trained with less data" (Dosovitskiy et
al. 2020, §4.2-4.3: ViT overtakes ResNets only with more pre-training data).

configs/vit_tiny.py (139k parameters), configs/cnn_tiny.py (111k) and configs/softmax_regression.py
trained on the first 1k, 5k, 20k and 60k Fashion-MNIST training images, two seeds each, with the
same trainer, AdamW recipe, augmentation and step budget (--steps updates of 128 images,
whatever the data size), scored on the 10,000 test images:

  python -m benchmarks.vit_vs_cnn --workdir=/tmp/vit_vs_cnn

Each run's workdir is kept: a rerun skips finished runs (and resumes an interrupted one), so the
sweep can be stopped and started again, or split over processes (measured here: 70 minutes with
`taskset -c 0 ... --models=vit` and `taskset -c 1 ... --models=linear,cnn` side by side, then
one run of the command above to gather the table). Writes
benchmarks/results/vit_vs_cnn.{json,md,png} (--out_dir): the test accuracies, a table, and a
plot of accuracy against training images.
"""

import json
import os
import statistics

from absl import app, flags
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from configs import cnn_tiny, softmax_regression, vit_tiny
from tfjax.tasks import registry

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/vit_vs_cnn", "Where the runs' workdirs go.")
_OUT_DIR = flags.DEFINE_string("out_dir", "benchmarks/results", "Where the results go.")
_STEPS = flags.DEFINE_integer("steps", 2000, "Training steps of every run (batch 128).")
_SIZES = flags.DEFINE_list("sizes", ["1000", "5000", "20000", "60000"], "Training images.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1"], "Seeds (init, data order, augmentation).")
_MODELS = flags.DEFINE_list("models", ["vit", "cnn", "linear"], "Which models.")
_TFDS_DIR = flags.DEFINE_string("tfds_data_dir", "", "TFDS data dir ('' for the default).")

CONFIGS = {"vit": vit_tiny, "cnn": cnn_tiny, "linear": softmax_regression}
NAMES = {"vit": "ViT (139k)", "cnn": "CNN (111k)", "linear": "softmax regression (7.9k)"}


def run_config(model: str, size: int, seed: int, steps: int):
  config = CONFIGS[model].get_config()
  config.data.update(train_split=f"train[:{size}]", tfds_data_dir=_TFDS_DIR.value)
  config.train.update(
    seed=seed,
    num_steps=steps,
    warmup_steps=max(1, steps // 20),
    log_every=100,
    eval_every=steps,  # once, at the end
    checkpoint_every=1000 if steps % 1000 == 0 else steps,
  )
  return config


def accuracy_of(model: str, size: int, seed: int, steps: int) -> float:
  workdir = os.path.join(_WORKDIR.value, f"{model}-{size}-seed{seed}-{steps}steps")
  done = os.path.join(workdir, "final_metrics.json")
  if not os.path.exists(done):
    registry.train(run_config(model, size, seed, steps), workdir)
  with open(done) as f:
    return json.load(f)["test_accuracy"]


def table(results: dict, sizes: list[int]) -> str:
  header = "| model | " + " | ".join(f"{n:,} images" for n in sizes) + " |"
  lines = [header, "|---" * (len(sizes) + 1) + "|"]
  for model, by_size in results.items():
    cells = []
    for n in sizes:
      values = by_size[str(n)]
      cells.append(f"{statistics.mean(values):.3f} ({', '.join(f'{v:.3f}' for v in values)})")
    lines.append(f"| {NAMES[model]} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot(results: dict, sizes: list[int], path: str, steps: int) -> None:
  fig = Figure(figsize=(6, 4))
  ax = fig.add_subplot()
  for model, by_size in results.items():
    means = [statistics.mean(by_size[str(n)]) for n in sizes]
    ax.plot(sizes, means, marker="o", label=NAMES[model])
    for n in sizes:
      ax.scatter([n] * len(by_size[str(n)]), by_size[str(n)], s=8, color="gray")
  ax.set_xscale("log")
  ax.set_xlabel("training images (Fashion-MNIST)")
  ax.set_ylabel("test accuracy (10,000 images)")
  ax.set_title(f"same trainer and budget: {steps:,} steps of 128 images")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  FigureCanvasAgg(fig)
  fig.savefig(path, dpi=100)


def main(argv: list[str]) -> None:
  del argv
  sizes, seeds, steps = [int(n) for n in _SIZES.value], [int(s) for s in _SEEDS.value], _STEPS.value
  results = {
    model: {str(n): [accuracy_of(model, n, seed, steps) for seed in seeds] for n in sizes}
    for model in _MODELS.value
  }
  os.makedirs(_OUT_DIR.value, exist_ok=True)
  stem = os.path.join(_OUT_DIR.value, "vit_vs_cnn")
  with open(stem + ".json", "w") as f:
    json.dump({"steps": steps, "batch_size": 128, "seeds": seeds, "test_accuracy": results}, f)
  markdown = table(results, sizes)
  with open(stem + ".md", "w") as f:
    f.write(markdown + "\n")
  plot(results, sizes, stem + ".png", steps)
  print(markdown)
  print(f"wrote {stem}.json, .md, .png; mean over seeds, each seed in parentheses")


if __name__ == "__main__":
  app.run(main)
