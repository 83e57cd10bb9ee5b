"""Shared by the train/ entry points: flag parsing and one-line errors for bad input."""

import contextlib
import sys
from collections.abc import Iterator

from absl import app, logging

from tfjax.training import orbax_echoes
from tfjax.training.faults import RunStopped
from train import config_errors


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser; a --config.* override naming a key that does not exist exits with one line.

  ml_collections raises KeyError/AttributeError (with a "Did you mean" hint) from inside flag
  parsing, which absl would show as a traceback.
  """
  config_errors.exit_if_bad_config_file(argv)  # a missing file or one without get_config()
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
  """Bad input (a ValueError or OSError from tfjax's checks) exits with its one-line message; a
  run that stopped early (`RunStopped`) with its own line and status; Ctrl-C outside the
  training loop with status 130.

  The traceback is logged at debug level: pass --verbosity=1 to see it.
  """
  orbax_echoes.install()  # for the rest of the process: echoes come until it exits
  try:
    yield
  except RunStopped as e:
    logging.debug("traceback:", exc_info=True)
    print(f"stopped: {e}", file=sys.stderr)
    sys.exit(e.exit_code)
  except (ValueError, OSError) as e:
    logging.debug("traceback:", exc_info=True)
    sys.exit(f"error: {e}")
  except KeyboardInterrupt:
    sys.exit("interrupted (Ctrl-C); a training run resumes from its latest checkpoint")
