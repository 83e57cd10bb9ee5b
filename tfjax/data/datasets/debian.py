"""Data files read out of Debian packages: found on disk or fetched with `apt-get download`.

Debian is one of the two registries reachable offline here (PyPI is the other), and
`apt-get download` needs no root and installs nothing. A .deb is an `ar` archive whose
data.tar.* holds the package's file tree (deb(5)); we read it with the standard library, and
with dpkg-deb only for compressions Python lacks (zstd). The builders that use it:
gettext_translations and fashion_mnist_offline.
"""

import io
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterable, Iterator, Sequence

import tensorflow_datasets as tfds
from etils import epath

_TAR_MODES = {
  "data.tar": "r|",
  "data.tar.gz": "r|gz",
  "data.tar.xz": "r|xz",
  "data.tar.bz2": "r|bz2",
}


def find_debs(packages: Sequence[str], directories: Iterable[epath.PathLike]) -> list[epath.Path]:
  """The .deb of each package ("<package>_<version>_<arch>.deb", as `apt-get download` names
  them) from the first directory holding all of them; [] if none does. Lets a build re-use
  files already downloaded or put there by hand, offline."""
  for directory in directories:
    directory = epath.Path(directory)
    if not directory.is_dir():
      continue
    found = [sorted(directory.glob(f"{package}_*.deb")) for package in packages]
    if all(found):
      several = [paths for paths in found if len(paths) > 1]
      if several:
        raise FileNotFoundError(
          f"{directory} holds several versions of a package ({[p.name for p in several[0]]}); "
          "keep one of them"
        )
      return [paths[0] for paths in found]
  return []


def download_debs(packages: Sequence[str], directory: epath.PathLike) -> list[epath.Path]:
  """`apt-get download` the packages into `directory` (no root needed, nothing installed).

  A failure is a FileNotFoundError (the data files cannot be had) that says how to fix it; the
  train/ entry points print it as one line."""
  directory = epath.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  command = ["apt-get", "download", *packages]
  try:
    done = subprocess.run(command, cwd=directory, capture_output=True, text=True)
    problem = f"exit status {done.returncode}: {done.stderr.strip()[-2000:]}"
    failed = done.returncode != 0
  except FileNotFoundError:
    problem, failed = "apt-get is not installed (not a Debian/Ubuntu machine?)", True
  if failed:
    raise FileNotFoundError(
      f"apt-get download {' '.join(packages)} failed: {problem}; on a fresh Debian/Ubuntu "
      f"machine run `apt-get update` (as root) first, or put the .deb files in {directory}"
    )
  debs = find_debs(packages, [directory])
  if not debs:
    raise FileNotFoundError(
      f"apt-get download {' '.join(packages)} succeeded but {directory} lacks some of the "
      "<package>_*.deb files; put them there by hand"
    )
  return debs


def manual_dir(dl_manager: tfds.download.DownloadManager) -> list[epath.Path]:
  """[the build's manual dir], or [] when it has none or an empty one (TFDS asserts then). The
  builder needs MANUAL_DOWNLOAD_INSTRUCTIONS for TFDS to give it one."""
  try:
    return [dl_manager.manual_dir]
  except AssertionError:  # No manual dir, or an empty one.
    return []


def builder_debs(
  packages: Sequence[str], dl_manager: tfds.download.DownloadManager, subdir: str
) -> list[epath.Path]:
  """The packages' .deb files for a TFDS build: from its manual dir, else from
  `<download dir>/<subdir>` (an earlier download), else downloaded there with apt-get."""
  download_dir = dl_manager.download_dir / subdir
  return find_debs(packages, [*manual_dir(dl_manager), download_dir]) or download_debs(
    packages, download_dir
  )


def _ar_members(data: bytes) -> Iterator[tuple[str, bytes]]:
  """(name, content) of each member of an `ar` archive, the container of a .deb (deb(5))."""
  if data[:8] != b"!<arch>\n":
    raise ValueError("not a .deb file (no `ar` archive signature); download it again")
  pos = 8
  while pos + 60 <= len(data):
    header = data[pos : pos + 60]  # name 16, mtime 12, uid 6, gid 6, mode 8, size 10, "`\n"
    if header[58:60] != b"`\n":
      raise ValueError(f"corrupt `ar` member header at byte {pos}; download the .deb again")
    name = header[:16].decode("ascii").strip().rstrip("/")
    size = int(header[48:58])
    yield name, data[pos + 60 : pos + 60 + size]
    pos += 60 + size + size % 2  # Members are 2-byte aligned.


def _data_tar(deb_path: epath.Path) -> tarfile.TarFile:
  """The deb's data.tar.* (its file tree), opened for streaming."""
  for name, content in _ar_members(deb_path.read_bytes()):
    if name in _TAR_MODES:
      return tarfile.open(fileobj=io.BytesIO(content), mode=_TAR_MODES[name])
    if name.startswith("data.tar."):  # .zst (Ubuntu) and others that Python cannot open.
      if shutil.which("dpkg-deb") is None:
        raise FileNotFoundError(
          f"{deb_path} holds {name}, which Python cannot decompress, and dpkg-deb is missing; "
          "install dpkg (apt-get install dpkg) to read it"
        )
      tar = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", str(deb_path)], capture_output=True, check=True
      ).stdout
      return tarfile.open(fileobj=io.BytesIO(tar), mode="r|")
  raise ValueError(f"{deb_path} holds no data.tar member; download it again")


def deb_members(deb_path: epath.PathLike, pattern: str | re.Pattern) -> Iterator[tuple[str, bytes]]:
  """(path, content) of each regular file of a .deb whose path matches `pattern` (`re.search`
  on the path as the archive writes it, e.g. "./usr/share/locale/de/LC_MESSAGES/gimp20.mo"), in
  archive order. The archive is streamed: only the matching files are read into memory."""
  pattern = re.compile(pattern)
  with _data_tar(epath.Path(deb_path)) as tar:
    for member in tar:
      if member.isfile() and pattern.search(member.name):
        yield member.name, tar.extractfile(member).read()
