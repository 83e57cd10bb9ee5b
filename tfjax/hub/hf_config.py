"""A family's `config.json` <-> the fields of its tfjax config, with the checks every family needs.

A family is data (`ConfigSpec`): which keys copy to which fields, HF's defaults, and the options
tfjax implements one way only, so a checkpoint that needs another way is refused by name
instead of being imported into a model that computes something else.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

# HF's activation names -> ours, and back (HF's "gelu_new" is the tanh approximation).
HF_ACTIVATIONS = {
  "gelu": "gelu",
  "gelu_new": "gelu_tanh",
  "gelu_pytorch_tanh": "gelu_tanh",
  "relu": "relu",
}
OUR_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}


@dataclasses.dataclass(frozen=True)
class ConfigSpec:
  """How one family's config.json maps onto its tfjax config."""

  model_type: str  # config.json's model_type ("gpt2")
  family: str  # in messages: "tfjax imports only GPT-2 checkpoints"
  classes: str  # HF's classes of the family, in messages: "GPT2LMHeadModel or GPT2Model"
  model: str  # our model, in messages: "which tfjax's GPT does not implement"
  # (config.json key, our field, HF's default: what its config class assumes when the key is
  # missing), copied both ways.
  fields: tuple[tuple[str, str, Any], ...]
  activation: tuple[str, str]  # the key that names the activation, and HF's default
  fixed: tuple[tuple[str, Any, str], ...]  # (key, the value tfjax implements, what others mean)
  other_defaults: Mapping[str, Any]  # HF's defaults of the keys read beside the fields


def hf_values(spec: ConfigSpec, hf_config: Mapping[str, Any]) -> dict[str, Any]:
  """config.json's values over HF's defaults (a null value takes the default), after checking
  that tfjax implements its model_type, fixed options and activation."""
  model_type = hf_config.get("model_type", spec.model_type)
  if model_type != spec.model_type:
    raise ValueError(
      f"config.json has model_type={model_type!r}; tfjax imports only {spec.family} checkpoints "
      f"(model_type {spec.model_type!r}, e.g. {spec.classes})"
    )
  for key, value, meaning in spec.fixed:
    if key in hf_config and hf_config[key] != value:
      raise ValueError(
        f"config.json sets {key}={hf_config[key]!r} ({meaning}), which tfjax's {spec.model} "
        f"does not implement; only {key}={value!r} checkpoints can be imported"
      )
  key, default = spec.activation
  defaults = {key: default, **{k: v for k, _, v in spec.fields}, **spec.other_defaults}
  hf = {**defaults, **{k: v for k, v in hf_config.items() if v is not None}}
  if hf[key] not in HF_ACTIVATIONS:
    raise ValueError(
      f"config.json has {key}={hf[key]!r}, which tfjax does not implement; supported: "
      f"{sorted(HF_ACTIVATIONS)}"
    )
  return hf


def config_fields(spec: ConfigSpec, hf: Mapping[str, Any]) -> dict[str, Any]:
  """Our config's fields from `hf_values`: the copied ones and the activation."""
  fields = {ours: hf[key] for key, ours, _ in spec.fields}
  return {**fields, "activation": HF_ACTIVATIONS[hf[spec.activation[0]]]}


def config_json(spec: ConfigSpec, config: Any) -> dict[str, Any]:
  """The config.json keys of `config` that the spec knows: model_type, the copied fields, the
  activation and the fixed options."""
  fixed = {key: value for key, value, _ in spec.fixed}
  copied = {key: getattr(config, ours) for key, ours, _ in spec.fields}
  activation = {spec.activation[0]: OUR_ACTIVATIONS[config.activation]}
  return {"model_type": spec.model_type, **copied, **activation, **fixed}


def summary(spec: ConfigSpec, config: Any, keys: tuple[str, ...]) -> str:
  """ "n_layer=2, n_embd=32": some of `config`'s values under their config.json keys."""
  fields = {key: ours for key, ours, _ in spec.fields}
  return ", ".join(f"{key}={getattr(config, fields[key])}" for key in keys)
