r"""Trains a GPT language model; resumes from the latest checkpoint in --workdir.

python -m train.gpt --config=configs/gpt_tiny.py --workdir=workdir/gpt_tiny
python -m train.gpt --config=configs/gpt_tiny.py --workdir=/tmp/w --config.train.num_steps=50
"""

from absl import app, flags, logging
from ml_collections import config_flags

from tfjax.training.trainer import train_and_evaluate
from train.cli import one_line_errors, parse_flags

_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, metrics, plots and samples go here.")
config_flags.DEFINE_config_file("config", None, "A configs/*.py file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:  # keep the terminal to the progress bar and report
    logging.set_verbosity(logging.WARNING)
  with one_line_errors():
    train_and_evaluate(flags.FLAGS.config, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
