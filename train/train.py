r"""Trains the task the config names (`config.task`: lm, bert_pretraining, classification,
question_answering, translation); resumes from the latest checkpoint in --workdir.

python -m train.train --config=configs/gpt_tiny.py --workdir=workdir/gpt_tiny
python -m train.train --config=configs/gpt_tiny.py --workdir=/tmp/w --config.train.num_steps=50
python -m train.train --config=configs/bert_tiny_topics.py --workdir=workdir/bert_tiny_topics
"""

from absl import app, flags, logging
from ml_collections import config_flags

from tfjax.tasks import registry
from train.cli import one_line_errors, parse_flags

_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, metrics, plots and outputs go here.")
config_flags.DEFINE_config_file("config", None, "A configs/*.py file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:  # keep the terminal to the progress bar and report
    logging.set_verbosity(logging.WARNING)
  with one_line_errors():
    registry.train(flags.FLAGS.config, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
