"""One converter between HF tensors and tfjax parameters, for every model family.

A family is data (`Family`): one row per HF tensor naming the parameter it becomes, the prefix
HF may nest the body under, older spellings, buffers and tied copies. Import checks every tensor
against the shapes of the tfjax model, so a checkpoint that does not fit its config fails naming
each parameter and both shapes instead of producing a subtly wrong model; export runs the same
rows the other way. The rows speak of `layer_{i}`: a scanned model (stacked layers) converts
through the unscanned layout. LoRA adapters have no HF tensors: export merges them into the
weights (`tfjax.nn.lora.merge`, with the target's `lora`), import reads the base weights.
"""

import dataclasses
import functools
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from tfjax.nn import lora as lora_lib
from tfjax.nn.stack import stack_layers, unstack_layers

Params = dict[str, Any]

# How an HF array becomes ours (import), and ours an HF one (export).
TRANSFORMS = {
  "as_is": (lambda x: x, lambda x: x),
  "transpose": (lambda x: x.T, lambda x: x.T),  # nn.Linear's weight [out, in] <-> kernel [in, out]
  # nn.Conv2d's weight [out, in, kh, kw] (NCHW) <-> flax's kernel [kh, kw, in, out] (NHWC)
  "conv": (lambda x: x.transpose(2, 3, 1, 0), lambda x: x.transpose(3, 2, 0, 1)),
  "unbatch": (lambda x: x[0], lambda x: x[None]),  # a table HF keeps as [1, n, d] <-> [n, d]
  "flatten": (lambda x: x.reshape(-1), lambda x: x.reshape(1, 1, -1)),  # [1, 1, d] <-> [d]
}


class Row(NamedTuple):
  """One HF tensor and the tfjax parameter it becomes."""

  hf: str  # HF name, without the body prefix; "{i}" stands for the layer index
  ours: str  # our path ("layer_{i}/mlp/hidden/kernel"); a body path is relative to the body
  transform: str = "as_is"  # a key of TRANSFORMS
  part: int | None = None  # q, k, v = 0, 1, 2: the third of our fused qkv's last axis it fills


@dataclasses.dataclass(frozen=True)
class Family:
  """An HF model family as data: all the converter needs besides the tfjax model's shapes."""

  name: str  # in reports: "the GPT-2 checkpoint does not fit its config"
  model: str  # our model, in reports: "no tfjax GPT parameter corresponds to it"
  rows: tuple[Row, ...]  # every tensor of every head tfjax imports
  prefix: str  # what HF nests the body under in some files ("transformer.", "bert.")
  task_prefixes: tuple[str, ...]  # HF's task layers (heads): beside the body, never under prefix
  task_hint: str = ""  # ends the report of an unknown tensor under a task prefix
  buffers: tuple[str, ...] = ()  # tensors that are not parameters (masks, position ids): ignored
  renames: tuple[tuple[str, str], ...] = ()  # older name endings -> the rows' endings
  tied_copies: tuple[tuple[str, str], ...] = ()  # (copy, kept): stored twice, must be equal
  untied_copy: str = ""  # why a copy that differs from its kept tensor cannot be imported


@dataclasses.dataclass(frozen=True)
class Target:
  """The tfjax model one conversion reads into or writes from."""

  shapes: Params  # its `params` as ShapeDtypeStructs (`abstract_params`), scanned or not
  num_layers: int
  description: str  # in reports: "a GPT with num_layers=2, tie_embeddings=True"
  summary: str  # its config in HF's words, in reports: "n_layer=2, n_embd=32, ..."
  body_path: str = ""  # where the model nests the body ("bert/" inside BERT's heads)
  hf_prefix: str = ""  # put before the HF names of body tensors on export
  lora: lora_lib.LoRA | None = None  # the config's adapters: merged into the weights on export


def abstract_params(module: nn.Module) -> Params:
  """The `params` of a module taking token ids, as ShapeDtypeStructs (nothing is allocated)."""
  tokens = jax.ShapeDtypeStruct((1, 1), jnp.int32)
  return jax.eval_shape(module.init, jax.random.key(0), tokens)["params"]


@functools.cache
def name_pattern(template: str) -> re.Pattern:
  """The regex of a name template: "{i}" matches a layer index (group "i")."""
  return re.compile(re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)") + "$")


def normalize(family: Family, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """HF tensors under the names the rows use: without the body prefix, older spellings
  renamed, tied copies dropped (after checking they are copies) and buffers removed."""
  out = {}
  for name, array in tensors.items():
    short = name.removeprefix(family.prefix)
    for old, new in family.renames:
      if short.endswith(old):
        short = short.removesuffix(old) + new
    if short in out:
      raise ValueError(f"the checkpoint holds {name!r} and another tensor that is also {short!r}")
    out[short] = array
  for copy, kept in family.tied_copies:
    if copy not in out:
      continue
    if kept not in out:
      out[kept] = out.pop(copy)
    elif np.array_equal(out[copy], out[kept]):
      del out[copy]
    else:
      raise ValueError(f"the checkpoint's {copy!r} differs from {kept!r}: {family.untied_copy}")
  buffers = [name_pattern(name) for name in family.buffers]
  return {name: a for name, a in out.items() if not any(p.match(name) for p in buffers)}


def _rows(family: Family, target: Target) -> list[Row]:
  """The family's rows with our full paths: body paths under `target.body_path`."""
  rows = []
  for row in family.rows:
    in_body = not row.hf.startswith(family.task_prefixes)
    rows.append(row._replace(ours=target.body_path + row.ours) if in_body else row)
  return rows


def _expected_shapes(target: Target) -> dict[str, tuple[int, ...]]:
  """Our unscanned parameter paths ("layer_0/mlp/hidden/kernel") -> shapes; no adapters."""
  flat = traverse_util.flatten_dict(unstack_layers(lora_lib.base_params(target.shapes)), sep="/")
  return {path: tuple(leaf.shape) for path, leaf in flat.items()}


def _name_map(
  family: Family, target: Target, expected: Mapping[str, tuple[int, ...]]
) -> dict[str, Row]:
  """HF name -> its row, layer index filled in, for every parameter of the target model."""
  names = {}
  for row in _rows(family, target):
    for i in range(target.num_layers) if "{i}" in row.hf else [None]:
      path = row.ours.format(i=i)
      if path in expected:
        names[row.hf.format(i=i)] = row._replace(hf=row.hf.format(i=i), ours=path)
  unmapped = sorted(set(expected) - {row.ours for row in names.values()})
  if unmapped:  # the table and the model disagree: a tfjax bug, not a checkpoint problem
    raise RuntimeError(f"the {family.name} name table has no entry for tfjax parameters {unmapped}")
  return names


def _part_shape(shape: tuple[int, ...], part: int | None) -> tuple[int, ...]:
  return shape if part is None else (*shape[:-1], shape[-1] // 3)


def _describe_unexpected(family: Family, target: Target, name: str, shape: tuple[int, ...]) -> str:
  for row in _rows(family, target):
    match = name_pattern(row.hf).match(name)
    if match:
      path = row.ours.format(**match.groupdict())
      return (
        f"unexpected HF parameter {name!r} {shape}: it would be our {path!r}, which "
        f"{target.description} does not have (shape: none)"
      )
  hint = family.task_hint if name.startswith(family.task_prefixes) else ""
  return (
    f"unexpected HF parameter {name!r} {shape}: no tfjax {family.model} parameter corresponds "
    f"to it (our parameter: none){hint}"
  )


def params_from_hf(family: Family, target: Target, tensors: Mapping[str, np.ndarray]) -> Params:
  """The target model's `params` from HF tensors (names with or without the body prefix),
  as float32 arrays, stacked when the target is scanned.

  Raises a ValueError listing every missing, unexpected or mis-shaped tensor, each with the
  HF name (without the prefix), our path and both shapes.
  """
  tensors = normalize(family, tensors)
  expected = _expected_shapes(target)
  names = _name_map(family, target, expected)
  problems = []
  for hf, row in names.items():
    if hf not in tensors:
      shape = _part_shape(expected[row.ours], row.part)
      problems.append(f"missing HF parameter {hf!r} (shape: none) for our {row.ours!r} {shape}")
  for hf, array in tensors.items():
    if hf not in names:
      problems.append(_describe_unexpected(family, target, hf, tuple(array.shape)))
  parts: dict[str, dict[int | None, np.ndarray]] = {}
  for hf, row in names.items():
    if hf not in tensors:
      continue
    array = TRANSFORMS[row.transform][0](np.asarray(tensors[hf], dtype=np.float32))
    needed = _part_shape(expected[row.ours], row.part)
    if tuple(array.shape) != needed:
      note = "" if row.transform == "as_is" else f" after the {row.transform!r} transform"
      third = "" if row.part is None else f" for its {'qkv'[row.part]} third"
      problems.append(
        f"shape mismatch: HF parameter {hf!r} {tuple(tensors[hf].shape)} gives {array.shape}"
        f"{note}, but our {row.ours!r} needs {needed}{third}"
      )
      continue
    parts.setdefault(row.ours, {})[row.part] = array
  if problems:
    raise ValueError(
      f"the {family.name} checkpoint does not fit its config ({target.summary}) as "
      f"{target.description}; check that config.json belongs to these weights:\n  "
      + "\n  ".join(problems)
    )
  flat = {}
  for path, pieces in parts.items():  # q | k | v thirds concatenate into the fused projection
    whole = pieces[None] if None in pieces else np.concatenate([pieces[p] for p in range(3)], -1)
    flat[path] = jnp.asarray(whole)
  params = traverse_util.unflatten_dict(flat, sep="/")
  if jax.tree.structure(unstack_layers(target.shapes)) != jax.tree.structure(target.shapes):
    return stack_layers(params, target.num_layers)  # the target is scanned
  return params


def params_to_hf(family: Family, target: Target, params: Params) -> dict[str, np.ndarray]:
  """HF tensors (float32, body names under `target.hf_prefix`) from the target's `params`
  (or its `{"params": ...}` variables), scanned or not; LoRA adapters merged into the weights."""
  if set(params) == {"params"}:
    params = params["params"]
  if lora_lib.has_adapters(params):
    if target.lora is None:
      raise ValueError(
        f"the params hold LoRA adapters, but {target.description} has none; export them with "
        "the config they were trained with (its lora says how to merge them)"
      )
    params = lora_lib.merge(params, target.lora)
  flat = traverse_util.flatten_dict(unstack_layers(params), sep="/")
  tensors = {}
  for hf, row in _name_map(family, target, _expected_shapes(target)).items():
    if row.ours not in flat:
      raise ValueError(
        f"params has no {row.ours!r} (HF {hf!r}); are they the params of {target.description}?"
      )
    array = np.asarray(flat[row.ours], dtype=np.float32)
    if row.part is not None:
      array = np.split(array, 3, axis=-1)[row.part]
    name = hf if hf.startswith(family.task_prefixes) else target.hf_prefix + hf
    tensors[name] = np.ascontiguousarray(TRANSFORMS[row.transform][1](array))
  return tensors
