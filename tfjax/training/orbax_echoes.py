"""Orbax's async I/O reports one failed read or write many times; `orbax_echoes_to_debug` sends
the repeats to the debug log, so that the user sees the failure once, from its exception."""

import contextlib
import gc
import logging as std_logging
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from types import TracebackType

from absl import logging


@contextlib.contextmanager
def orbax_echoes_to_debug() -> Iterator[None]:
  """Orbax's async I/O reports one failed read or write many times: from each of its pending
  coroutines when collected, from tensorstore callbacks on its closed event loop ("Event loop is
  closed"), in asyncio's "exception was never retrieved" and in its own error log. The caller
  reports the failure once, from the exception it gets; the echoes go to the debug log
  (--verbosity=1) instead of a few hundred lines of tracebacks.
  """
  uninstall = install()
  try:
    yield
  finally:
    gc.collect()  # the failed operation's coroutines report now, while the hooks are ours
    uninstall()


def install() -> Callable[[], None]:
  """`orbax_echoes_to_debug` until the returned function is called. A CLI installs it for its
  whole process: the last echoes come when the interpreter collects what is left at exit."""
  previous_unraisable, previous_thread = sys.unraisablehook, threading.excepthook

  def unraisable(u) -> None:
    if _is_echo(u.exc_value, u.exc_traceback):
      _debug("orbax echo: %r", u.exc_value)
    else:
      previous_unraisable(u)

  def thread(a) -> None:
    if _is_echo(a.exc_value, a.exc_traceback):
      _debug("orbax echo in thread %s: %r", a.thread, a.exc_value)
    else:
      previous_thread(a)

  sys.unraisablehook, threading.excepthook = unraisable, thread
  orbax_log_filter = _OrbaxErrorsFilter()
  handlers = std_logging.getLogger().handlers + std_logging.getLogger("absl").handlers
  for handler in handlers:
    handler.addFilter(orbax_log_filter)
  asyncio_logger = std_logging.getLogger("asyncio")
  asyncio_level = asyncio_logger.level
  asyncio_logger.setLevel(std_logging.CRITICAL)

  def uninstall() -> None:
    sys.unraisablehook, threading.excepthook = previous_unraisable, previous_thread
    asyncio_logger.setLevel(asyncio_level)
    for handler in handlers:
      handler.removeFilter(orbax_log_filter)

  return uninstall


def _debug(message: str, *args) -> None:
  try:
    logging.debug(message, *args)
  except Exception:  # noqa: BLE001 (at interpreter exit logging may be gone: drop the echo)
    pass


def _is_echo(error: BaseException | None, tb: TracebackType | None) -> bool:
  """An exception raised in orbax's or asyncio's code, or a callback onto a closed loop."""
  if isinstance(error, RuntimeError) and "Event loop is closed" in str(error):
    return True
  files = [frame.f_code.co_filename for frame, _ in traceback.walk_tb(tb)]
  return any(f"{os.sep}orbax{os.sep}" in f or f"{os.sep}asyncio{os.sep}" in f for f in files)


class _OrbaxErrorsFilter(std_logging.Filter):
  """Drops the error records orbax logs about a failure its caller is about to raise."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return not (record.levelno >= std_logging.ERROR and f"{os.sep}orbax{os.sep}" in record.pathname)
