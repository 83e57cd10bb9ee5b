"""The HF conversion engine on a toy family: hand-written shapes, no model, no compile."""

import dataclasses

import jax
import numpy as np
import pytest

from tfjax.hub import engine
from tfjax.hub.engine import Row

D = 4  # width of the toy model
TOY = engine.Family(
  name="Toy",
  model="ToyModel",
  rows=(
    Row("embed.weight", "embed/embedding"),
    Row("layer.{i}.q.weight", "layer_{i}/qkv/kernel", "transpose", 0),
    Row("layer.{i}.k.weight", "layer_{i}/qkv/kernel", "transpose", 1),
    Row("layer.{i}.v.weight", "layer_{i}/qkv/kernel", "transpose", 2),
    Row("head.weight", "head/kernel", "transpose"),
  ),
  prefix="body.",
  task_prefixes=("head.", "classifier."),
  task_hint="; a task head the toy does not have",
  buffers=("layer.{i}.mask",),
  renames=(("weight_old", "weight"),),
  tied_copies=(("decoder.weight", "embed.weight"),),
  untied_copy="an untied decoder",
)


def sds(*shape: int) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(shape, np.float32)


def target(num_layers: int = 2, scanned: bool = False) -> engine.Target:
  """The toy with its body under "body/" (as BERT's heads nest theirs) and a head beside it."""
  if scanned:
    layers = {"layers": {"qkv": {"kernel": sds(num_layers, D, 3 * D)}}}  # [layer, d, 3d]
  else:
    layers = {f"layer_{i}": {"qkv": {"kernel": sds(D, 3 * D)}} for i in range(num_layers)}
  body = {"embed": {"embedding": sds(8, D)}, **layers}
  return engine.Target(
    shapes={"body": body, "head": {"kernel": sds(D, 2)}},
    num_layers=num_layers,
    description=f"a ToyModel with num_layers={num_layers}",
    summary=f"n_layer={num_layers}",
    body_path="body/",
    hf_prefix="body.",
  )


def hf_tensors(num_layers: int = 2) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  tensors = {"body.embed.weight": rng.normal(size=(8, D)), "head.weight": rng.normal(size=(2, D))}
  for i in range(num_layers):
    for name in "qkv":
      tensors[f"body.layer.{i}.{name}.weight"] = rng.normal(size=(D, D))  # nn.Linear [out, in]
  return {name: array.astype(np.float32) for name, array in tensors.items()}


@pytest.mark.parametrize("scanned", [False, True])
def test_import_fills_the_fused_thirds_transposed_and_export_gives_the_tensors_back(scanned):
  tensors = hf_tensors()
  params = engine.params_from_hf(TOY, target(scanned=scanned), tensors)
  body = params["body"]
  layer_1 = body["layers"]["qkv"]["kernel"][1] if scanned else body["layer_1"]["qkv"]["kernel"]
  parts = [tensors[f"body.layer.1.{name}.weight"].T for name in "qkv"]  # [in, out]
  np.testing.assert_array_equal(layer_1, np.concatenate(parts, axis=-1))  # [d, q | k | v]
  np.testing.assert_array_equal(params["head"]["kernel"], tensors["head.weight"].T)
  assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(params))

  exported = engine.params_to_hf(TOY, target(scanned=scanned), {"params": params})
  assert set(exported) == set(tensors)  # the body under its prefix, the head beside it
  for name, array in tensors.items():
    np.testing.assert_array_equal(exported[name], array, err_msg=name)


def test_every_problem_is_reported_at_once_with_both_names_and_shapes():
  tensors = hf_tensors()
  del tensors["body.layer.0.k.weight"]
  tensors["body.layer.1.v.weight"] = np.zeros((D, D + 1), np.float32)
  tensors["body.layer.2.q.weight"] = np.zeros((D, D), np.float32)
  tensors["classifier.bias"] = np.zeros((3,), np.float32)
  with pytest.raises(ValueError) as error:
    engine.params_from_hf(TOY, target(), tensors)
  lines = str(error.value).split("\n  ")
  assert lines == [
    "the Toy checkpoint does not fit its config (n_layer=2) as a ToyModel with num_layers=2; "
    "check that config.json belongs to these weights:",
    "missing HF parameter 'layer.0.k.weight' (shape: none) for our 'body/layer_0/qkv/kernel' "
    "(4, 4)",
    "unexpected HF parameter 'layer.2.q.weight' (4, 4): it would be our "
    "'body/layer_2/qkv/kernel', which a ToyModel with num_layers=2 does not have (shape: none)",
    "unexpected HF parameter 'classifier.bias' (3,): no tfjax ToyModel parameter corresponds to "
    "it (our parameter: none); a task head the toy does not have",
    "shape mismatch: HF parameter 'layer.1.v.weight' (4, 5) gives (5, 4) after the 'transpose' "
    "transform, but our 'body/layer_1/qkv/kernel' needs (4, 4) for its v third",
  ]


def test_normalize_renames_old_spellings_drops_buffers_and_checks_tied_copies():
  embed = np.ones((8, D), np.float32)
  tensors = {"body.embed.weight_old": embed, "decoder.weight": embed, "layer.0.mask": embed}
  assert set(engine.normalize(TOY, tensors)) == {"embed.weight"}
  with pytest.raises(ValueError, match="'decoder.weight' differs from 'embed.weight': an untied"):
    engine.normalize(TOY, {"embed.weight": embed, "decoder.weight": 2 * embed})
  with pytest.raises(ValueError, match="'body.embed.weight' and another .* also 'embed.weight'"):
    engine.normalize(TOY, {"embed.weight": embed, "body.embed.weight": embed})


def test_a_model_parameter_no_row_names_is_a_tfjax_bug():
  toy = target()
  broken = dataclasses.replace(toy, shapes={**toy.shapes, "extra": {"bias": sds(D)}})
  with pytest.raises(RuntimeError, match=r"Toy name table has no entry .*\['extra/bias'\]"):
    engine.params_from_hf(TOY, broken, hf_tensors())
