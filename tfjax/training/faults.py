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


def check_policy(on_nonfinite: str, max_consecutive_nonfinite: int) -> None:
  """Raises a ValueError naming a bad train.on_nonfinite / train.max_consecutive_nonfinite."""
  if on_nonfinite not in NONFINITE_POLICIES:
    raise ValueError(
      f"train.on_nonfinite={on_nonfinite!r} is unknown; choose one of {NONFINITE_POLICIES}"
    )
  if max_consecutive_nonfinite < 1:
    raise ValueError(
      f"train.max_consecutive_nonfinite={max_consecutive_nonfinite} must be >= 1 (the skipped "
      "updates in a row after which the run stops)"
    )


def check_window(
  window: Sequence[dict[str, Any]],
  first_step: int,
  *,
  on_nonfinite: str,
  max_consecutive_nonfinite: int,
  kept: str,
) -> None:
  """Raises `RunStopped` if the fetched metrics of steps `first_step`, ... call for it.

  "stop": at the first step whose loss or gradient norm is not finite. "skip": once
  `max_consecutive_nonfinite` updates in a row were skipped (their gradients were not finite, so
  `optimizer.skip_nonfinite` left the state as it was). The check runs on what logging fetches
  anyway, so it adds no host-device sync; `kept` says which checkpoint the user still has.
  """
  for offset, metrics in enumerate(window):
    step = first_step + offset
    loss, grad_norm = float(metrics["loss"]), float(metrics["grad_norm"])
    values = f"loss {loss:.4g}, gradient norm {grad_norm:.4g}"
    if on_nonfinite == "stop" and not (math.isfinite(loss) and math.isfinite(grad_norm)):
      raise RunStopped(
        f"step {step} has a non-finite loss or gradient ({values}); nothing from it was saved "
        f"and {kept}. Lower train.learning_rate (or raise train.warmup_steps), or set "
        "train.on_nonfinite='skip' to skip such steps, then run the same command to resume"
      )
    in_a_row = int(metrics.get("skipped_in_a_row", 0))
    if on_nonfinite == "skip" and in_a_row >= max_consecutive_nonfinite:
      raise RunStopped(
        f"steps {step - in_a_row + 1}-{step}: {in_a_row} updates in a row had non-finite "
        f"gradients and were skipped (train.max_consecutive_nonfinite="
        f"{max_consecutive_nonfinite}; last {values}); {kept}. Lower train.learning_rate, then "
        "run the same command to resume"
      )
