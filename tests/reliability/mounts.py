"""Small tmpfs mounts for tests of what a full or read-only disk does.

Tests run as root in CI, where `chmod` does not stop a write: a read-only (or tiny) tmpfs does.
Mounting needs root with CAP_SYS_ADMIN; elsewhere `tmpfs` skips the test, saying why, and
`mounted_tmpfs` raises `MountRefused` for a test that falls back to something else.
"""

import contextlib
import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest


class MountRefused(Exception):
  """This process may not mount a tmpfs (not root, or no CAP_SYS_ADMIN); the message says why."""


@contextlib.contextmanager
def mounted_tmpfs(
  path: str | os.PathLike, size_bytes: int, read_only: bool = False
) -> Iterator[pathlib.Path]:
  """A tmpfs of `size_bytes` (read-only: empty and unwritable) mounted on `path`, created if
  needed, for the block; unmounted after. Raises MountRefused where mounting is not permitted."""
  path = pathlib.Path(path)
  if os.geteuid() != 0:
    raise MountRefused(f"mounting a tmpfs needs root (euid is {os.geteuid()})")
  if shutil.which("mount") is None or shutil.which("umount") is None:
    raise MountRefused("no mount/umount command on this machine")
  path.mkdir(parents=True, exist_ok=True)
  options = f"size={int(size_bytes)}" + (",ro" if read_only else "")
  done = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True
  )
  if done.returncode != 0:
    raise MountRefused(
      f"cannot mount a tmpfs on {path} (needs CAP_SYS_ADMIN): {done.stderr.strip()}"
    )
  try:
    yield path
  finally:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
      subprocess.run(["umount", "-l", str(path)], check=True)  # busy: detach it now


@contextlib.contextmanager
def tmpfs(
  path: str | os.PathLike, size_bytes: int, read_only: bool = False
) -> Iterator[pathlib.Path]:
  """`mounted_tmpfs`, or `pytest.skip` with the reason where mounting is not permitted."""
  with contextlib.ExitStack() as stack:
    try:
      mounted = stack.enter_context(mounted_tmpfs(path, size_bytes, read_only))
    except MountRefused as e:
      pytest.skip(str(e))
    yield mounted


def resize(path: str | os.PathLike, size_bytes: int) -> None:
  """Grows (or shrinks) the tmpfs mounted on `path`: 'space was freed'."""
  subprocess.run(["mount", "-o", f"remount,size={int(size_bytes)}", str(path)], check=True)
