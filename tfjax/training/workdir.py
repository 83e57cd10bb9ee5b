"""One writer per workdir: a run creates its workdir and holds a lock on it while it trains.

The lock is an `flock` on `<workdir>/train.lock`, which the kernel releases when the process
ends, however it ends: a second run refuses while the first lives, and a lock file left by a
killed run (it still names that run) is stale and taken over. Readers (sampling, translating)
take no lock.
"""

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator

import jax
import numpy as np
from absl import logging

from tfjax.training.faults import RunStopped

LOCK_FILE = "train.lock"


@contextlib.contextmanager
def claim(workdir: str) -> Iterator[None]:
  """Creates `workdir` if needed and holds it for this run (process 0 takes the lock; with
  several processes all of them stop if it cannot)."""
  error, fd = None, None
  _make_dir(workdir)
  if jax.process_index() == 0:
    fd, error = _lock(workdir)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    held = multihost_utils.broadcast_one_to_all(np.array(error is None))
    error = error if error or held else f"process 0 could not lock {workdir}; see its error"
  if error:
    raise RunStopped(error)
  try:
    yield
  finally:
    if fd is not None:
      os.ftruncate(fd, 0)  # an empty lock file: this run ended cleanly
      os.close(fd)  # releases the flock


def _make_dir(workdir: str) -> None:
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ValueError(f"--workdir={workdir} is a file, not a directory; choose a directory")
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise ValueError(
      f"cannot create --workdir={workdir} ({e.strerror}); choose a directory you can write to"
    ) from e


def _lock(workdir: str) -> tuple[int | None, str | None]:
  """(the lock file's descriptor, None), or (None, why another run holds the workdir)."""
  path = os.path.join(workdir, LOCK_FILE)
  try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise ValueError(
      f"cannot write to --workdir={workdir} ({e.strerror}); choose a directory you can write to"
    ) from e
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    owner = _read(fd) or "another process"
    os.close(fd)
    return None, (
      f"{workdir} is in use by another run ({owner}); wait for it to finish or stop it, or "
      "choose another --workdir"
    )
  except OSError as e:  # a filesystem without locks: train, unguarded
    logging.warning("cannot lock %s (%s): nothing stops a second run on this workdir", path, e)
    return fd, None
  stale = _read(fd)
  if stale:
    logging.warning("taking over the lock of a run that is gone (%s) in %s", stale, workdir)
  owner = f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M')}"
  os.ftruncate(fd, 0)
  os.pwrite(fd, owner.encode(), 0)
  return fd, None


def _read(fd: int) -> str:
  return os.pread(fd, 4096, 0).decode(errors="replace").strip()
