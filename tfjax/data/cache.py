"""The on-disk cache of prepared data: names keyed on what made a file, atomic writes.

A cache file's name ends in a digest of everything its content depends on (dataset version,
split, field, tokenizer hash, a recipe version), so a change makes a new file instead of reusing
a stale one. A file is written beside its final path and renamed into place, so a reader (another
process, a run after a crash) never sees half of one. Standard library only: the tokenizers use
it too.
"""

import errno
import hashlib
import json
import os
import pathlib
import re
import tempfile
from collections.abc import Callable, Mapping
from typing import IO, Any

NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)  # what writing in a read-only dir raises


def digest(key: Mapping[str, Any], length: int = 16) -> str:
  """The first `length` hex digits of the SHA-256 of `key` as sorted JSON."""
  return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:length]


def cache_path(
  directory: str | os.PathLike,
  stem: str,
  key: Mapping[str, Any],
  suffix: str = "",
  *,
  digest_length: int = 16,
) -> pathlib.Path:
  """`<directory>/<stem>-<digest of key><suffix>`, each run of characters of `stem` outside
  [A-Za-z0-9_.-] replaced by "_"."""
  safe_stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)
  return pathlib.Path(directory) / f"{safe_stem}-{digest(key, digest_length)}{suffix}"


def write_atomically(path: pathlib.Path, write: Callable[[IO[bytes]], Any]) -> None:
  """Calls `write` on a temporary file beside `path`, then renames it to `path`: e.g.
  `write_atomically(path, lambda f: np.save(f, array))`. A directory that cannot be written
  raises a PermissionError that says to choose a writable data.cache_dir."""
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    f = tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, delete=False)
  except OSError as e:
    if e.errno not in NOT_WRITABLE:
      raise
    raise PermissionError(
      f"cannot write the cache file {path} ({e.strerror}: {e.filename}); choose a writable "
      "data.cache_dir (by default <data.tfds_data_dir>/tfjax_cache)"
    ) from e
  with f:
    try:
      write(f)
    except BaseException:
      f.close()
      os.unlink(f.name)
      raise
  os.chmod(f.name, 0o644)  # NamedTemporaryFile makes it private; a cache may be shared.
  os.replace(f.name, path)
