"""Shared by the train/ entry points: flag parsing with one-line errors for config overrides."""

import contextlib
import sys
from collections.abc import Iterator

from absl import app, flags, logging


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser; a --config.* override naming a key that does not exist exits with one line.

  ml_collections raises KeyError/AttributeError (with a "Did you mean" hint) from inside flag
  parsing, which absl would show as a traceback.
  """
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError) as e:
    detail: object = e
    while isinstance(detail, BaseException) and detail.args:
      detail = detail.args[0]
    hint = " ".join(str(detail).split())
    sys.exit(
      f"error: a --config.* override names a key the config does not have: {hint} "
      "(the keys are those of the config file's get_config())"
    )


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
  """Bad input (a ValueError or missing file from tfjax's checks) exits with its one-line message.

  The traceback is logged at debug level: pass --verbosity=1 to see it.
  """
  try:
    yield
  except (ValueError, FileNotFoundError) as e:
    logging.debug("traceback:", exc_info=True)
    sys.exit(f"error: {e}")


def run_trainer() -> None:
  """The whole of a training entry point: --config and --workdir flags, then
  `train_and_evaluate` (the config's `task` picks the model) with one-line errors."""
  from ml_collections import config_flags

  from tfjax.training.trainer import train_and_evaluate

  workdir = flags.DEFINE_string("workdir", None, "Checkpoints, metrics, plots and outputs go here.")
  config_flags.DEFINE_config_file("config", None, "A configs/*.py file.", lock_config=True)
  flags.mark_flags_as_required(["config", "workdir"])

  def main(argv: list[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:  # keep the terminal to the progress bar and report
      logging.set_verbosity(logging.WARNING)
    with one_line_errors():
      train_and_evaluate(flags.FLAGS.config, workdir.value)

  app.run(main, flags_parser=parse_flags)
