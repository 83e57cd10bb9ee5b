"""What a run does when something goes wrong: the errors that stop it with its last good state
kept, and the check of each logged window for non-finite losses and gradients.

A run stops on purpose by raising `RunStopped`: its message is one line for the user (what
happened, what is kept, what to do) and its `exit_code` the process status the CLI exits with.
"""

import math
from collections.abc import Sequence
from typing import Any

NONFINITE_POLICIES = ("stop", "skip")


class RunStopped(Exception):
  """The run stopped early with its last good checkpoint intact (non-finite loss, a signal, a
  full disk, another run in the workdir)."""

  def __init__(self, message: str, exit_code: int = 1):
    super().__init__(message)
    self.exit_code = exit_code
