"""Fake Debian packages for the builders' tests: `write_deb` writes a .deb (checked against
dpkg-deb in test_debian.py), `fake_apt_get` puts an `apt-get` on PATH that copies prepared .deb
files into its working directory, as `apt-get download` does, and logs its calls."""

import io
import pathlib
import sys
import tarfile


def _tar(files: dict[str, bytes], compression: str) -> bytes:
  out = io.BytesIO()
  with tarfile.open(fileobj=out, mode=f"w:{compression}") as tar:
    for name, content in files.items():
      info = tarfile.TarInfo("./" + name)
      info.size = len(content)
      tar.addfile(info, io.BytesIO(content))
  return out.getvalue()


def write_deb(path: pathlib.Path, files: dict[str, bytes], compression: str = "xz") -> None:
  """A .deb (deb(5)): an `ar` archive of debian-binary, control.tar.* and data.tar.*."""

  def member(name: str, data: bytes) -> bytes:
    header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode("ascii")
    return header + data + b"\n" * (len(data) % 2)

  package = path.name.split("_")[0]
  control = f"Package: {package}\nVersion: 1.0\nArchitecture: all\n".encode()
  path.write_bytes(
    b"!<arch>\n"
    + member("debian-binary", b"2.0\n")
    + member(f"control.tar.{compression}", _tar({"control": control}, compression))
    + member(f"data.tar.{compression}", _tar(files, compression))
  )


def fake_apt_get(directory: pathlib.Path, store: pathlib.Path, exit_code: int = 0) -> None:
  """Writes `directory/apt-get`: it logs its arguments and copies the .deb files of `store` into
  its cwd, or fails as apt does on a machine without package lists. Put `directory` on PATH."""
  directory.mkdir(parents=True, exist_ok=True)
  script = directory / "apt-get"
  script.write_text(
    f"""#!{sys.executable}
import pathlib, shutil, sys
with open({str(directory / "calls.log")!r}, "a") as log:
  log.write(" ".join(sys.argv[1:]) + "\\n")
if {exit_code}:
  sys.stderr.write("E: Unable to locate package " + sys.argv[2] + "\\n")
  sys.exit({exit_code})
assert sys.argv[1] == "download"
for package in sys.argv[2:]:
  for deb in pathlib.Path({str(store)!r}).glob(package + "_*.deb"):
    shutil.copy(deb, pathlib.Path.cwd() / deb.name)
"""
  )
  script.chmod(0o755)


def apt_calls(directory: pathlib.Path) -> list[str]:
  """The argument lines of each call of the fake apt-get in `directory`."""
  log = directory / "calls.log"
  return log.read_text().splitlines() if log.exists() else []
