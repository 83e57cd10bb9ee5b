"""Preemption and Ctrl-C: SIGTERM or SIGINT asks the loop to stop after the current step.

The loop then saves a checkpoint of that step, waits for it, and stops (`faults.RunStopped`,
exit status 128 + the signal's number); a second signal exits at once. A preempted TPU VM or spot
GPU sends SIGTERM and waits a little before it kills: enough for one step and one save.

With several processes (`jax.distributed.initialize`), JAX's preemption service owns SIGTERM: its
notifier tells the coordinator, and `reached_preemption_sync_point(step)` turns true on every
process at the same step (MaxText and Orbax use the same point). A Python SIGTERM handler would
replace the notifier's, so only SIGINT gets one, which hands the signal on as a SIGTERM.
"""

import os
import signal
import threading
from types import FrameType

import jax
from absl import logging
from jax.experimental import multihost_utils

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequests:
  """Catches SIGTERM and SIGINT between `install()` and `uninstall()`; `requested(step)`, called
  once after every step, says whether the run should stop there. Only the main thread can
  install handlers: elsewhere it catches nothing."""

  def __init__(self):
    self.signum: int | None = None
    self._multiprocess = jax.process_count() > 1
    self._stop = False
    self._previous: dict[int, object] = {}

  def install(self) -> "StopRequests":
    if threading.current_thread() is threading.main_thread():
      caught = (signal.SIGINT,) if self._multiprocess else SIGNALS
      self._previous = {s: signal.signal(s, self._handle) for s in caught}
    return self

  def uninstall(self) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

  def _handle(self, signum: int, frame: FrameType | None) -> None:
    if self.signum is not None:
      os.write(2, f"\n{signal.Signals(signum).name} again: exiting now, without saving\n".encode())
      os._exit(128 + signum)
    self.signum = signum
    logging.warning(
      "%s: stopping after this step and saving a checkpoint of it (send it again to exit now)",
      signal.Signals(signum).name,
    )
    if self._multiprocess:  # JAX's notifier listens to SIGTERM only
      os.kill(os.getpid(), signal.SIGTERM)

  def requested(self, step: int) -> bool:
    """Whether to stop after `step` (the same step on every process); cheap: no network."""
    if not self._stop:
      if self._multiprocess:
        self._stop = multihost_utils.reached_preemption_sync_point(step)
      else:
        self._stop = self.signum is not None
    return self._stop

  @property
  def name(self) -> str:
    """The signal, for the user: a process told by the coordinator reports SIGTERM."""
    return signal.Signals(self.signum or signal.SIGTERM).name

  @property
  def exit_code(self) -> int:
    return 128 + (self.signum or signal.SIGTERM)
