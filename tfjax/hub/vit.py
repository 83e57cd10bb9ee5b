"""Hugging Face ViT checkpoints <-> tfjax ViT parameters: the name table and config.json.

Reads `ViTForImageClassification` checkpoints (the body under "vit.", then `classifier.*`) and
`ViTModel` ones (no prefix, with or without `pooler.dense.*`, which becomes our pre-logits layer)
and writes both; `tfjax.hub.engine` does the conversion and its checks, `tfjax.hub.files` the
directory. HF's ViT uses exact GELU and config.json's `layer_norm_eps` (1e-12 by default), both
read from the file: the original JAX checkpoints' tanh GELU and 1e-6 come through as written.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from tfjax.hub import engine, files
from tfjax.hub.engine import Params, Row
from tfjax.hub.hf_config import ConfigSpec, config_fields, config_json, hf_values, summary
from tfjax.models import vit
from tfjax.models.vit import HEADS, ViTConfig

HF_PREFIX = "vit."  # ViTForImageClassification nests the body under it
BODY_PATH = "vit/"  # ... as our ViT does
HEAD_ARCHITECTURES = {"model": "ViTModel", "classifier": "ViTForImageClassification"}
POOLER_PREFIX = "pooler."  # HF ViTModel's pooler (dense + tanh): our pre-logits layer
HF_NUM_LABELS = 2  # what HF's config assumes without id2label or num_labels

_QKV = "layer_{i}/self_attention/qkv/"
_LAYER = "encoder.layer.{i}."
# The body (ViTModel). HF keeps q, k and v as three nn.Linear; our attention has one fused
# projection [d, 3d] laid out q | k | v, so each fills a third. HF's pre-LN layer calls its norms
# layernorm_before (attention) and layernorm_after (MLP).
VIT_PARAM_NAMES: tuple[Row, ...] = (
  Row("embeddings.cls_token", "cls_token", "flatten"),  # [1, 1, d] -> [d]
  Row("embeddings.position_embeddings", "position_embed/embedding", "unbatch"),  # [1, N+1, d]
  # nn.Conv2d [d, C, P, P] -> flax's [P, P, C, d]
  Row("embeddings.patch_embeddings.projection.weight", "patch_embed/kernel", "conv"),
  Row("embeddings.patch_embeddings.projection.bias", "patch_embed/bias"),
  Row(_LAYER + "attention.attention.query.weight", _QKV + "kernel", "transpose", 0),
  Row(_LAYER + "attention.attention.key.weight", _QKV + "kernel", "transpose", 1),
  Row(_LAYER + "attention.attention.value.weight", _QKV + "kernel", "transpose", 2),
  Row(_LAYER + "attention.attention.query.bias", _QKV + "bias", "as_is", 0),
  Row(_LAYER + "attention.attention.key.bias", _QKV + "bias", "as_is", 1),
  Row(_LAYER + "attention.attention.value.bias", _QKV + "bias", "as_is", 2),
  Row(_LAYER + "attention.output.dense.weight", "layer_{i}/self_attention/out/kernel", "transpose"),
  Row(_LAYER + "attention.output.dense.bias", "layer_{i}/self_attention/out/bias"),
  Row(_LAYER + "layernorm_before.weight", "layer_{i}/self_attention_norm/scale"),
  Row(_LAYER + "layernorm_before.bias", "layer_{i}/self_attention_norm/bias"),
  Row(_LAYER + "intermediate.dense.weight", "layer_{i}/mlp/hidden/kernel", "transpose"),
  Row(_LAYER + "intermediate.dense.bias", "layer_{i}/mlp/hidden/bias"),
  Row(_LAYER + "output.dense.weight", "layer_{i}/mlp/output/kernel", "transpose"),
  Row(_LAYER + "output.dense.bias", "layer_{i}/mlp/output/bias"),
  Row(_LAYER + "layernorm_after.weight", "layer_{i}/mlp_norm/scale"),
  Row(_LAYER + "layernorm_after.bias", "layer_{i}/mlp_norm/bias"),
  Row("layernorm.weight", "final_norm/scale"),
  Row("layernorm.bias", "final_norm/bias"),
  Row("pooler.dense.weight", "pre_logits/kernel", "transpose"),
  Row("pooler.dense.bias", "pre_logits/bias"),
)
# ViTForImageClassification's head, beside "vit/".
VIT_HEAD_PARAM_NAMES: tuple[Row, ...] = (
  Row("classifier.weight", "classifier/kernel", "transpose"),
  Row("classifier.bias", "classifier/bias"),
)
VIT = engine.Family(
  name="ViT",
  model="ViT",
  rows=VIT_PARAM_NAMES + VIT_HEAD_PARAM_NAMES,
  prefix=HF_PREFIX,
  task_prefixes=("classifier.",),
)

VIT_CONFIG = ConfigSpec(
  model_type="vit",
  family="ViT",
  classes="ViTForImageClassification or ViTModel",
  model="ViT",
  fields=(  # HF's ViTConfig
    ("image_size", "image_size", 224),
    ("patch_size", "patch_size", 16),
    ("num_channels", "num_channels", 3),
    ("num_hidden_layers", "num_layers", 12),
    ("num_attention_heads", "num_heads", 12),
    ("hidden_size", "d_model", 768),
    ("intermediate_size", "d_ff", 3072),
    ("hidden_dropout_prob", "dropout_rate", 0.0),
    ("attention_probs_dropout_prob", "attention_dropout_rate", 0.0),
    ("layer_norm_eps", "layer_norm_epsilon", 1e-12),
    ("initializer_range", "init_std", 0.02),
  ),
  activation=("hidden_act", "gelu"),
  fixed=(
    ("qkv_bias", True, "query, key and value projections without biases"),
    ("pooler_act", "tanh", "a pooler activation other than tanh"),
  ),
  other_defaults={"pooler_output_size": None},  # None: hidden_size
)


# ----------------------------------------------------------------------------------------------
# Config.
# ----------------------------------------------------------------------------------------------


def _check_head(head: str) -> None:
  if head not in HEADS:
    raise ValueError(
      f"head={head!r} is unknown; tfjax imports {sorted(HEADS)} (ViTModel, "
      "ViTForImageClassification)"
    )


def head_of_architectures(hf_config: Mapping[str, Any]) -> str:
  """ "model" when config.json names ViTModel as its class, else "classifier" (also when it
  names none: HF's default config has labels)."""
  return "model" if hf_config.get("architectures") == ["ViTModel"] else "classifier"


def _square(hf: Mapping[str, Any], key: str) -> int:
  """HF accepts an int or an [h, w] pair; tfjax's ViT takes square images and patches."""
  value = hf[key]
  if isinstance(value, list | tuple):
    if len(value) != 2 or value[0] != value[1]:
      raise ValueError(
        f"config.json has {key}={value!r}, non-square, which tfjax's ViT does not implement; "
        "only square images and patches can be imported"
      )
    value = value[0]
  return value


def num_labels(hf_config: Mapping[str, Any]) -> int:
  """The classes of an HF classifier, as transformers counts them: id2label wins over
  num_labels, and 2 without either."""
  if hf_config.get("id2label"):
    return len(hf_config["id2label"])
  count = hf_config.get("num_labels")
  return HF_NUM_LABELS if count is None else count


def class_names(hf_config: Mapping[str, Any]) -> tuple[str, ...] | None:
  """The class names of config.json's id2label, in class order (None without one)."""
  id2label = hf_config.get("id2label")
  if not id2label:
    return None
  return tuple(id2label[key] for key in sorted(id2label, key=int))


def vit_config_from_hf(
  hf_config: Mapping[str, Any], head: str | None = None, pre_logits: bool | None = None
) -> ViTConfig:
  """The ViTConfig of an HF ViT `config.json` (as a dict); unsupported options raise.

  `head` and `pre_logits` (the checkpoint holds HF's pooler) are facts of the weights, which
  `load_vit` reads there; by default they follow `architectures`: a ViTModel has its pooler
  (HF's add_pooling_layer=True), a ViTForImageClassification has none.
  """
  head = head_of_architectures(hf_config) if head is None else head
  _check_head(head)
  pre_logits = head == "model" if pre_logits is None else pre_logits
  if head == "classifier" and pre_logits:
    raise ValueError(
      "HF's ViTForImageClassification has no pooler (its classifier reads the [CLS] state); "
      "import a classifier with pre_logits=False, or its body with head='model'"
    )
  hf = hf_values(VIT_CONFIG, hf_config)
  pooler_size = hf["pooler_output_size"]
  if pooler_size is not None and pooler_size != hf["hidden_size"]:
    raise ValueError(
      f"config.json sets pooler_output_size={pooler_size} but hidden_size={hf['hidden_size']}; "
      "tfjax's pre-logits layer keeps the width, so only pooler_output_size=hidden_size imports"
    )
  fields = config_fields(VIT_CONFIG, hf)
  fields.update(image_size=_square(hf, "image_size"), patch_size=_square(hf, "patch_size"))
  classes = num_labels(hf_config) if head == "classifier" else 0
  return ViTConfig(**fields, num_classes=classes, pre_logits=pre_logits)


def _check_exportable(config: ViTConfig, head: str) -> None:
  _check_head(head)
  if config.pooling != "cls":
    raise ValueError(
      f"model.pooling={config.pooling!r} has no HF equivalent: HF's ViT has a [CLS] token and "
      "pools it; only pooling='cls' models export"
    )
  if head == "classifier" and config.pre_logits:
    raise ValueError(
      "a ViT classifier with pre_logits=True has no HF equivalent: ViTForImageClassification "
      "reads the [CLS] state with no pooler; export the body alone with head='model' (its "
      "pre-logits layer becomes ViTModel's pooler)"
    )


def vit_config_to_hf(
  config: ViTConfig, head: str, label_names: Sequence[str] | None = None
) -> dict[str, Any]:
  """The HF `config.json` dict of a ViTConfig, for `ViTModel` or `ViTForImageClassification`;
  a classifier's classes are `label_names` (default HF's own "LABEL_{i}")."""
  _check_exportable(config, head)
  hf = {
    **config_json(VIT_CONFIG, config),
    "pooler_output_size": config.d_model,
    "architectures": [HEAD_ARCHITECTURES[head]],
  }
  if head == "model":
    if label_names is not None:
      raise ValueError("label_names are for head='classifier'; a ViTModel has no classes")
    return hf
  names = [f"LABEL_{i}" for i in range(config.num_classes)] if label_names is None else label_names
  if len(names) != config.num_classes:
    raise ValueError(
      f"{len(names)} label_names for a classifier of model.num_classes={config.num_classes}; "
      "give one name per class, in class order"
    )
  hf["id2label"] = {str(i): name for i, name in enumerate(names)}
  hf["label2id"] = {name: i for i, name in enumerate(names)}
  return hf


# ----------------------------------------------------------------------------------------------
# Parameters.
# ----------------------------------------------------------------------------------------------


def _target(config: ViTConfig, head: str) -> engine.Target:
  _check_head(head)
  nested = head == "classifier"
  keys = (
    "image_size",
    "patch_size",
    "num_channels",
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
  )
  labels = f", num_labels={config.num_classes}" if nested else ""
  return engine.Target(
    shapes=vit.abstract_params(HEADS[head](config)),
    num_layers=config.num_layers,
    description=(
      f"{HEAD_ARCHITECTURES[head]} with num_layers={config.num_layers}, "
      f"pre_logits={config.pre_logits} (HF's pooler)"
    ),
    summary=summary(VIT_CONFIG, config, keys) + labels,
    body_path=BODY_PATH if nested else "",
    hf_prefix=HF_PREFIX if nested else "",
    lora=config.lora,
  )


def detect_head(tensors: Mapping[str, np.ndarray]) -> str:
  """ "classifier" when the (normalized) tensors hold `classifier.*`, else "model"."""
  return "classifier" if any(n.startswith(VIT.task_prefixes) for n in tensors) else "model"


def vit_params_from_hf(config: ViTConfig, tensors: Mapping[str, np.ndarray], head: str) -> Params:
  """Our `params` collection of `HEADS[head](config)` from HF ViT tensors (with or without
  "vit."). Layers the model does not have are dropped, as transformers drops them: the
  classifier with head="model", the pooler without `config.pre_logits` (HF's
  ViTForImageClassification has none).

  Raises a ValueError listing every missing, unexpected or mis-shaped tensor, each with the
  HF name (without "vit."), our name and both shapes. Arrays become float32.
  """
  target = _target(config, head)
  tensors = engine.normalize(VIT, tensors)
  dropped = [POOLER_PREFIX] if not config.pre_logits else []
  dropped += list(VIT.task_prefixes) if head == "model" else []
  names = sorted(n for n in tensors if n.startswith(tuple(dropped)))
  if names:
    logging.info("ViT import as %s: dropping %s", HEAD_ARCHITECTURES[head], names)
  tensors = {n: a for n, a in tensors.items() if n not in names}
  return engine.params_from_hf(VIT, target, tensors)


def vit_params_to_hf(config: ViTConfig, params: Params, head: str) -> dict[str, np.ndarray]:
  """HF tensors of `ViTModel` (head="model": no prefix) or `ViTForImageClassification` ("vit."
  prefix on the body) from our `params` of `HEADS[head](config)`."""
  _check_exportable(config, head)
  return engine.params_to_hf(VIT, _target(config, head), params)


# ----------------------------------------------------------------------------------------------
# Files.
# ----------------------------------------------------------------------------------------------


def load_vit(model_dir: str | Path, head: str | None = None) -> tuple[ViTConfig, Params, str]:
  """(config, params, head) of an HF ViT checkpoint directory; `HEADS[head](config).apply(
  {"params": params}, images)` with NHWC images then gives HF's outputs on their NCHW transpose.

  `head` defaults to what the checkpoint holds ("classifier" with `classifier.*`, else "model");
  head="model" takes the body alone from any ViT checkpoint. The body gets pre-logits exactly
  when it is a ViTModel holding `pooler.dense.*`.
  """
  hf_config = files.read_config(model_dir)
  tensors = engine.normalize(VIT, files.read_safetensors(model_dir))
  head = detect_head(tensors) if head is None else head
  _check_head(head)
  pooler = head == "model" and any(n.startswith(POOLER_PREFIX) for n in tensors)
  config = vit_config_from_hf(hf_config, head, pre_logits=pooler)
  return config, vit_params_from_hf(config, tensors, head), head


def save_vit(
  model_dir: str | Path,
  config: ViTConfig,
  params: Params,
  head: str,
  label_names: Sequence[str] | None = None,
) -> None:
  """Writes `config.json` + `model.safetensors` that transformers' ViTModel (head="model") or
  ViTForImageClassification (head="classifier", classes named `label_names`) loads."""
  hf = vit_config_to_hf(config, head, label_names)
  files.write_checkpoint(model_dir, hf, vit_params_to_hf(config, params, head))
