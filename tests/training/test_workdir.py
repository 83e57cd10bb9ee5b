"""workdir.claim: a run's workdir is a writable directory that no other live run holds."""

import fcntl
import os
import subprocess
import sys

import pytest

from tests.reliability.mounts import MountRefused, mounted_tmpfs
from tfjax.training import faults, workdir


def test_a_workdir_that_is_a_file_is_refused_in_one_line(tmp_path):
  (tmp_path / "w").write_text("not a directory")
  with pytest.raises(ValueError, match=r"--workdir=.*/w is a file, not a directory"):
    with workdir.claim(str(tmp_path / "w")):
      pass
  assert (tmp_path / "w").read_text() == "not a directory"


def test_a_workdir_that_cannot_be_written_is_refused_in_one_line(tmp_path, monkeypatch):
  try:
    with mounted_tmpfs(tmp_path / "ro", 1_000_000, read_only=True) as read_only:
      with pytest.raises(ValueError, match="cannot create --workdir=.*Read-only file system"):
        with workdir.claim(str(read_only / "w")):
          pass
  except MountRefused:  # no mount here: the same failure, injected
    real_makedirs = os.makedirs

    def read_only_makedirs(path, *args, **kwargs):
      if str(path).startswith(str(tmp_path / "ro")):
        raise OSError(30, "Read-only file system")
      return real_makedirs(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", read_only_makedirs)
    with pytest.raises(ValueError, match="cannot create --workdir=.*Read-only file system"):
      with workdir.claim(str(tmp_path / "ro" / "w")):
        pass


def test_a_held_workdir_is_refused_naming_the_holder_and_a_dead_ones_lock_taken_over(tmp_path):
  path = tmp_path / workdir.LOCK_FILE
  holder = subprocess.Popen(
    [
      sys.executable,
      "-c",
      "import fcntl, os, sys, time\n"
      f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
      "fcntl.flock(fd, fcntl.LOCK_EX)\n"
      "os.write(fd, f'pid {os.getpid()} on a test host'.encode())\n"
      "print('locked', flush=True)\n"
      "time.sleep(60)\n",
    ],
    stdout=subprocess.PIPE,
    text=True,
  )
  try:
    assert holder.stdout.readline() == "locked\n"
    with pytest.raises(faults.RunStopped, match=rf"in use by another run \(pid {holder.pid} on"):
      with workdir.claim(str(tmp_path)):
        pass
  finally:
    holder.kill()
    holder.wait()
  with workdir.claim(str(tmp_path)):  # the kernel released the dead process's flock
    fd = os.open(path, os.O_RDWR)
    with pytest.raises(BlockingIOError):  # and this run holds it now
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert f"pid {os.getpid()} on" in path.read_text()
    os.close(fd)
  assert path.read_text() == ""  # a run that ended cleanly leaves an empty lock file
