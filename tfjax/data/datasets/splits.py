"""Deterministic train / validation / test splits from a stable hash of each example's key."""

import hashlib


def hash_split(key: str, train_per_mille: int, validation_per_mille: int) -> str:
  """ "train" for the first `train_per_mille` of 1000 hash buckets, "validation" up to
  `validation_per_mille`, else "test". SHA-256, not Python's salted `hash`: the same on every
  machine and run, and an example keeps its split when others are added or removed."""
  bucket = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % 1000
  if bucket < train_per_mille:
    return "train"
  if bucket < validation_per_mille:
    return "validation"
  return "test"
