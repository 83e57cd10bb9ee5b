"""Runs a module as `python -m` would, recording every path the process writes from Python.

`python -m tests.training.run_recording_writes LOG MODULE ARGS...` runs MODULE with ARGS and
appends to LOG one line per file opened for writing, directory made or file renamed (Python
audit events: `open`, `os.mkdir`, `os.rename`, which `os.replace` also raises). Writes done in
C++ (Orbax's tensorstore arrays) are not seen. tests/training/test_parallel_multihost.py uses it
to show that only process 0 writes logs and summaries.
"""

import os
import runpy
import sys

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _written_paths(event: str, args: tuple) -> list:
  if event == "open":
    path, mode, flags = args
    writes = any(c in mode for c in "wax+") if isinstance(mode, str) else flags & _WRITE_FLAGS
    return [path] if writes and isinstance(path, str | bytes | os.PathLike) else []
  if event == "os.mkdir":
    return [args[0]]
  if event == "os.rename":
    return [args[1]]
  return []


def main() -> None:
  log_path, module, *args = sys.argv[1:]
  log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

  def hook(event: str, args: tuple) -> None:
    for path in _written_paths(event, args):
      os.write(log, os.fsencode(os.path.abspath(os.fsdecode(path))) + b"\n")  # no audit event

  sys.addaudithook(hook)
  sys.argv = [module, *args]
  runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
  main()
