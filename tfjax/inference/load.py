"""One way to load a trained model into (config, params, tokenizer): a tfjax training workdir
(config.json, the latest Orbax checkpoint, the tokenizer saved beside it) or an HF checkpoint
directory (config.json, model.safetensors, the vocabulary files), for GPT (HF GPT-2 or GPT-1,
told apart by config.json's model_type), BERT, the Transformer and ViT (an image model: no
tokenizer).

A workdir's config.json has a "model" section (and a "task"); an HF one has none. Only
`config.json` is read to tell them apart and to check the family, before any weights. A workdir
of a LoRA run (its config.json's "lora" section) loads with the adapters merged into the
weights (`tfjax.nn.lora.merge`): an ordinary model.
"""

import json
import pathlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from absl import logging

from tfjax.data.tokenizers import bert as bert_tokenizer
from tfjax.data.tokenizers import gpt2 as gpt2_tokenizer
from tfjax.data.tokenizers import hf_bpe
from tfjax.data.tokenizers import openai_gpt as openai_gpt_tokenizer
from tfjax.data.tokenizers.sentencepiece import MODEL_FILE, SentencePieceTokenizer
from tfjax.hub import bert as bert_hub
from tfjax.hub import gpt2, openai_gpt
from tfjax.hub import vit as vit_hub
from tfjax.models import vit
from tfjax.models.bert import BertConfig, BertForPreTraining
from tfjax.models.gpt import GPT, GPTConfig
from tfjax.models.transformer import Transformer, TransformerConfig
from tfjax.models.vit import ViT, ViTConfig
from tfjax.nn import lora
from tfjax.training import checkpoint

CONFIG_FILE = "config.json"
ADDED_TOKENS_FILE = "added_tokens.json"  # a prompt_response run's {added token: id, "eos_id": id}
SENTENCEPIECE_FILE = MODEL_FILE  # what the GPT and translation tasks save


class Loaded(NamedTuple):
  """A loaded model: `config` (GPTConfig, BertConfig, TransformerConfig or ViTConfig), its
  `params`, and its `tokenizer` (None when not asked for, and for ViT)."""

  config: Any
  params: Any
  tokenizer: Any | None


def _on_tokens(model_cls: type, num_inputs: int = 1) -> Callable[[Any], Any]:
  """config -> the params of `model_cls(config)` on int32 token ids, as ShapeDtypeStructs (the
  Transformer takes two inputs: source, target)."""
  tokens = [jax.ShapeDtypeStruct((1, 1), jnp.int32)] * num_inputs

  def abstract_params(config: Any) -> Any:
    init = lambda rng, *inputs: model_cls(config).init(rng, *inputs)["params"]
    return jax.eval_shape(init, jax.random.key(0), *tokens)

  return abstract_params


class _Family(NamedTuple):
  config_cls: type
  # config -> the params its workdir task trains (a checkpoint holds them), as ShapeDtypeStructs
  abstract_params: Callable[[Any], Any]
  task: str  # that task
  name: str  # for messages: "a {name} {kind} run", "a tfjax {kind} workdir"
  kind: str
  recipe: str  # python -m train.train --config=configs/{recipe}.py trains one
  hf: str | None  # the HF family it imports, None: workdirs only
  architecture: str | None = None  # the config's "architecture" when its task trains several
  # (workdir, config.json's model config) -> the config of the params its checkpoints hold
  workdir_config: Callable[[pathlib.Path, Any], Any] = lambda root, config: config


FAMILIES = {
  "gpt": _Family(
    GPTConfig, _on_tokens(GPT), "lm", "GPT", "language-model", "gpt_tiny", "GPT-2 or GPT-1"
  ),
  "prompt_response": _Family(
    GPTConfig,
    _on_tokens(GPT),
    "prompt_response",
    "GPT prompt -> response",
    "fine-tuning",
    "gpt_tiny_summarize",
    None,
    workdir_config=lambda root, config: config.replace(vocab_size=added_vocab_size(root)),
  ),
  "bert": _Family(
    BertConfig,
    _on_tokens(BertForPreTraining),
    "bert_pretraining",
    "BERT",
    "pre-training",
    "bert_tiny",
    "BERT",
  ),
  "transformer": _Family(
    TransformerConfig,
    _on_tokens(Transformer, num_inputs=2),
    "translation",
    "Transformer",
    "translation",
    "transformer_tiny",
    None,
  ),
  "vit": _Family(
    ViTConfig,
    lambda config: vit.abstract_params(ViT(config)),  # on images
    "image_classification",
    "ViT",
    "image-classification",
    "vit_tiny",
    "ViT",
    architecture="vit",  # beside "cnn" and "linear", which have no loader
  ),
}


def added_tokens(root: str | pathlib.Path) -> dict[str, int]:
  """{name: id} of the tokens a prompt -> response run appended after its pre-trained
  vocabulary (its separator, and EOS for a tokenizer without one), and "eos_id": its EOS."""
  path = pathlib.Path(root) / ADDED_TOKENS_FILE
  if not path.is_file():
    raise FileNotFoundError(
      f"{root} has no {ADDED_TOKENS_FILE} (the ids of its separator and EOS); run python -m "
      f"train.train again with the run's --config and --workdir={root}: it resumes and writes "
      "it again"
    )
  return json.loads(path.read_text())


def added_vocab_size(root: str | pathlib.Path) -> int:
  """The vocabulary size of a prompt -> response run's GPT: its added tokens come last."""
  return 1 + max(i for name, i in added_tokens(root).items() if name != "eos_id")


def _openai_gpt_lm(root: pathlib.Path) -> tuple[GPTConfig, Any]:
  """GPT-1's LM: an OpenAIGPTDoubleHeadsModel's is its params["gpt"] (the multiple-choice head
  serves fine-tuning, not the LM)."""
  config, params, head = openai_gpt.load_openai_gpt(root)
  if head == "double_heads":
    logging.info("%s is an OpenAIGPTDoubleHeadsModel: loading its LM, not its choice head", root)
    return config, params["gpt"]
  return config, params


class _HFGPT(NamedTuple):
  """How one HF model_type of the GPT family loads: config, LM params, tokenizer."""

  config_from_hf: Callable[[Mapping[str, Any]], GPTConfig]
  load: Callable[[pathlib.Path], tuple[GPTConfig, Any]]
  tokenizer_from_dir: Callable[[pathlib.Path], Any]


HF_GPT = {  # config.json's model_type -> its loaders
  "gpt2": _HFGPT(gpt2.gpt2_config_from_hf, gpt2.load_gpt2, gpt2_tokenizer.gpt2_tokenizer_from_dir),
  "openai-gpt": _HFGPT(
    openai_gpt.openai_gpt_config_from_hf,
    _openai_gpt_lm,
    openai_gpt_tokenizer.openai_gpt_tokenizer_from_dir,
  ),
}


def _hf_gpt(hf_config: Mapping[str, Any]) -> _HFGPT:
  model_type = hf_config.get("model_type", "gpt2")  # as the GPT-2 import reads a file without
  if model_type not in HF_GPT:
    raise ValueError(
      f"config.json has model_type={model_type!r}; tfjax's GPT imports HF model_type 'gpt2' "
      "(GPT-2) and 'openai-gpt' (GPT-1)"
    )
  return HF_GPT[model_type]


def _hf_gpt_of(root: pathlib.Path) -> _HFGPT:
  return _hf_gpt(json.loads((root / CONFIG_FILE).read_text()))


_HF_CONFIGS = {
  "gpt": lambda hf_config: _hf_gpt(hf_config).config_from_hf(hf_config),
  "bert": bert_hub.bert_config_from_hf,
  "vit": vit_hub.vit_config_from_hf,  # the head and pooler of config.json's architectures
}


def _family(family: str) -> _Family:
  if family not in FAMILIES:
    raise ValueError(f"family={family!r} is unknown; choose one of {sorted(FAMILIES)}")
  return FAMILIES[family]


def _what_to_give(spec: _Family) -> str:
  command = f"python -m train.train --config=configs/{spec.recipe}.py"
  what = f"a tfjax {spec.kind} workdir (train a model in it first: {command})"
  if spec.hf is not None:
    what += f" or an HF {spec.hf} directory (config.json + model.safetensors)"
  return what


def read_config(path: str | pathlib.Path, family: str) -> tuple[str, Any]:
  """("workdir" | "hf", model config) of `path`, from its config.json alone (an HF GPT-2 with
  an untied output head says so only in its weights); raises if the directory is missing, holds
  no config.json, or holds a model of another family."""
  spec, root = _family(family), pathlib.Path(path)
  if not root.is_dir():
    what = "is a file, not a directory" if root.exists() else "does not exist"
    raise FileNotFoundError(f"{str(path)!r} {what}; give {_what_to_give(spec)}")
  if not (root / CONFIG_FILE).is_file():
    raise FileNotFoundError(f"{str(path)!r} has no {CONFIG_FILE}; give {_what_to_give(spec)}")
  saved = json.loads((root / CONFIG_FILE).read_text())
  task = _task_of(saved)
  if task is not None:
    if task != spec.task:
      raise ValueError(
        f"{str(path)!r} is a workdir of task {task!r}, not a {spec.name} {spec.kind} run; give "
        f"{_what_to_give(spec)}"
      )
    architecture = saved.get("architecture", spec.architecture)
    if architecture != spec.architecture:
      raise ValueError(
        f"{str(path)!r} is a workdir of architecture {architecture!r}, not a {spec.name} "
        f"{spec.kind} run; give {_what_to_give(spec)}"
      )
    return "workdir", spec.workdir_config(root, spec.config_cls.from_config(saved["model"]))
  if spec.hf is None:
    raise ValueError(
      f"{str(path)!r} is not a tfjax workdir (its {CONFIG_FILE} has no model section); give "
      f"{_what_to_give(spec)}"
    )
  return "hf", _HF_CONFIGS[family](saved)  # raises on another model_type


def load(
  path: str | pathlib.Path,
  family: str,
  *,
  head: str | None = None,
  average_last: int = 1,
  tokenizer: bool = True,
) -> Loaded:
  """(config, params, tokenizer) of a tfjax workdir or an HF directory.

  Args:
    path: a training workdir (its latest checkpoint is read) or an HF checkpoint directory.
    family: "gpt" (params of GPT; for an HF GPT-1 OpenAIGPTDoubleHeadsModel, its LM's),
      "prompt_response" (the GPT of a prompt_response workdir, its vocabulary with the added
      tokens: `added_tokens`), "bert", "transformer" (workdirs only) or "vit" (params of ViT
      for a workdir or an HF ViTForImageClassification, of ViTModel for an HF ViTModel).
    head: BERT only. An HF directory: as `tfjax.hub.bert.load_bert` (None: what it holds;
      "model": the encoder alone). A pre-training workdir holds "pretraining" (the default);
      "model" takes its encoder.
    average_last: a workdir: the mean of its newest `average_last` checkpoints (Vaswani et al.
      2017, §6.1); 1 is the latest alone.
    tokenizer: False leaves the vocabulary files unread (`Loaded.tokenizer` is None). An
      image model has none: for ViT it is None either way.
  """
  root = pathlib.Path(path)
  source, config = read_config(root, family)
  if head is not None and family != "bert":
    raise ValueError(f"head={head!r} is for BERT; a {family} model has one head")
  if source == "hf":
    if average_last != 1:
      raise ValueError(f"average_last={average_last} is for workdirs; {root} is an HF directory")
    config, params = _load_hf(family, root, head)
  else:
    if head not in (None, "pretraining", "model"):
      raise ValueError(
        f"head={head!r}: a BERT pre-training workdir holds 'pretraining' (the default) and its "
        "encoder, 'model'"
      )
    params = _restore(root, FAMILIES[family], config, average_last)
    if head == "model":
      params = params["bert"]
  loaded_tokenizer = _load_tokenizer(family, root, source, config) if tokenizer else None
  return Loaded(config, params, loaded_tokenizer)


def _load_hf(family: str, root: pathlib.Path, head: str | None) -> tuple[Any, Any]:
  if family == "gpt":
    return _hf_gpt_of(root).load(root)
  if family == "vit":
    config, params, _ = vit_hub.load_vit(root)
    return config, params
  config, params, _ = bert_hub.load_bert(root, head=head)
  return config, params


def _restore(root: pathlib.Path, spec: _Family, config: Any, average_last: int) -> Any:
  """The params of the latest checkpoint, or the mean of the newest `average_last`; a LoRA
  run's with its adapters merged into the weights."""
  adapters = lora.LoRA.from_config(json.loads((root / CONFIG_FILE).read_text()).get("lora"))
  if adapters is not None:
    if average_last != 1:
      raise ValueError(
        f"{root} trained LoRA adapters; average_last={average_last} would average them apart "
        "from their weights: load it with average_last=1"
      )
    abstract = spec.abstract_params(config.replace(lora=adapters))
    return lora.merge(checkpoint.restore_params(str(root), abstract), adapters)
  abstract = spec.abstract_params(config)
  if average_last == 1:
    return checkpoint.restore_params(str(root), abstract)
  return checkpoint.average_checkpoints(str(root), abstract, average_last)[0]


def _load_tokenizer(family: str, root: pathlib.Path, source: str, config: Any) -> Any:
  """BERT's vocab.txt or sentencepiece.model; GPT-2's or GPT-1's vocab.json + merges.txt; or the
  tokenizer.model a GPT or translation run saved; None for an image model."""
  if family == "vit":
    return None
  if family == "bert":
    return bert_tokenizer.load_bert_tokenizer(root)
  if source == "hf":
    tokenizer = _hf_gpt_of(root).tokenizer_from_dir(root)
    if tokenizer.vocab_size > config.vocab_size:  # an id past the embedding would be clamped
      raise ValueError(
        f"{root}'s vocab.json has {tokenizer.vocab_size} tokens but the model's vocab_size is "
        f"{config.vocab_size}; use the vocabulary files saved with this checkpoint"
      )
    return tokenizer
  fix = (
    f"run python -m train.train again with the run's --config and --workdir={root}: it resumes "
    f"from the latest checkpoint and writes {SENTENCEPIECE_FILE} again"
  )
  try:
    tokenizer = saved_tokenizer(root)
  except ValueError as e:
    raise ValueError(f"{e}; {fix}") from e
  if tokenizer is None:
    raise FileNotFoundError(f"{root} has no {SENTENCEPIECE_FILE}; {fix}")
  return tokenizer


def load_tokenizer(path: str | pathlib.Path, family: str) -> Any:
  """The tokenizer of a workdir or HF directory, as `load(path, family).tokenizer`, without
  reading any weights."""
  source, config = read_config(path, family)
  return _load_tokenizer(family, pathlib.Path(path), source, config)


# tokenizer_config.json's tokenizer_class -> the loader of a directory holding its files.
BPE_TOKENIZERS = {
  "GPT2Tokenizer": gpt2_tokenizer.gpt2_tokenizer_from_dir,
  "OpenAIGPTTokenizer": openai_gpt_tokenizer.openai_gpt_tokenizer_from_dir,
}


def saved_tokenizer(directory: str | pathlib.Path) -> Any | None:
  """The tokenizer a run saved in its workdir: tokenizer.model, or vocab.json + merges.txt
  beside a tokenizer_config.json naming the class (`hf_bpe.BPETokenizer.save`); None when it
  holds none."""
  root = pathlib.Path(directory)
  if (root / SENTENCEPIECE_FILE).is_file():
    return SentencePieceTokenizer.load(root / SENTENCEPIECE_FILE)
  config = root / hf_bpe.TOKENIZER_CONFIG_FILE
  if not config.is_file():
    return None
  name = str(json.loads(config.read_text()).get("tokenizer_class")).removesuffix("Fast")
  if name not in BPE_TOKENIZERS:
    raise ValueError(
      f"{config} names tokenizer_class={name!r}; tfjax reads {sorted(BPE_TOKENIZERS)} from "
      "vocab.json + merges.txt"
    )
  return BPE_TOKENIZERS[name](root)


def workdir_task(path: str | pathlib.Path) -> str | None:
  """The task of a tfjax workdir ("lm" for one written before configs named it); None for an
  HF directory or a path without a config.json."""
  config = pathlib.Path(path) / CONFIG_FILE
  return _task_of(json.loads(config.read_text())) if config.is_file() else None


def _task_of(saved: Mapping[str, Any]) -> str | None:
  """The task of a config.json with a "model" section (a workdir's), else None (an HF one's)."""
  if not isinstance(saved.get("model"), dict):
    return None
  return saved.get("task", "lm")  # written before configs named their task: a GPT run


def is_hf_directory(path: str | pathlib.Path) -> bool:
  """Whether `path` holds an HF checkpoint's config.json (a workdir's has a "model" section)."""
  config = pathlib.Path(path) / CONFIG_FILE
  return config.is_file() and not isinstance(json.loads(config.read_text()).get("model"), dict)
