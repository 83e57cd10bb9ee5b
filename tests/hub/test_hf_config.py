"""config.json <-> config fields on a toy spec: defaults, the refusals, and the way back."""

import dataclasses

import pytest

from tfjax.hub import hf_config

TOY = hf_config.ConfigSpec(
  model_type="toy",
  family="Toy",
  classes="ToyModel",
  model="ToyNet",
  fields=(("n_embd", "d_model", 8), ("n_layer", "num_layers", 2)),
  activation=("act", "gelu_new"),
  fixed=(("causal", False, "a causal toy"),),
  other_defaults={"bias": True},
)


@dataclasses.dataclass(frozen=True)
class ToyConfig:
  d_model: int
  num_layers: int
  activation: str


def test_missing_and_null_keys_take_hfs_defaults_and_the_fields_go_back_unchanged():
  hf = hf_config.hf_values(TOY, {"model_type": "toy", "n_embd": 16, "n_layer": None})
  assert hf == {"model_type": "toy", "n_embd": 16, "n_layer": 2, "act": "gelu_new", "bias": True}
  fields = hf_config.config_fields(TOY, hf)
  assert fields == {"d_model": 16, "num_layers": 2, "activation": "gelu_tanh"}
  assert hf_config.config_json(TOY, ToyConfig(**fields)) == {
    "model_type": "toy",
    "n_embd": 16,
    "n_layer": 2,
    "act": "gelu_new",
    "causal": False,
  }
  summary = hf_config.summary(TOY, ToyConfig(**fields), ("n_layer", "n_embd"))
  assert summary == "n_layer=2, n_embd=16"


@pytest.mark.parametrize(
  ("hf", "match"),
  [
    ({"model_type": "other"}, r"model_type='other'; tfjax imports only Toy checkpoints"),
    ({"causal": True}, r"causal=True \(a causal toy\), which tfjax's ToyNet does not implement"),
    ({"act": "silu"}, r"act='silu', which tfjax does not implement; supported: \['gelu'"),
  ],
)
def test_what_tfjax_does_not_implement_is_refused_by_name(hf, match):
  with pytest.raises(ValueError, match=match):
    hf_config.hf_values(TOY, hf)
