"""What every fine-tuning task of a pre-trained text model shares (BERT: Devlin et al. 2018, §4;
GPT: Radford et al. 2018, §3.2): the start from a pre-trained body (a tfjax pre-training
workdir or an HF directory), its architecture and tokenizer, and the batches of encoded
examples."""

import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
from absl import logging

from tfjax.data import pipeline
from tfjax.data.tokenizers import bert as bert_tokenizer
from tfjax.data.tokenizers.base import Tokenizer
from tfjax.inference import load
from tfjax.models.bert import PARAM_AXES, BertConfig
from tfjax.tasks.bert_pretraining import bert_flops_per_token
from tfjax.training.task import Task, TaskData, adopt_architecture

# Ids compared to tell two vocabularies apart (every id of a small one).
_FINGERPRINT_IDS = 2000


def same_vocabulary(a: Tokenizer, b: Tokenizer) -> bool:
  """Whether two tokenizers give the same ids the same pieces (on a spread of ids)."""
  if a.vocab_size != b.vocab_size:
    return False
  ids = range(0, a.vocab_size, max(1, a.vocab_size // _FINGERPRINT_IDS))
  return all(a.decode([i]) == b.decode([i]) for i in ids)


class FineTuningTask(Task):
  """What every fine-tuning task shares: it starts from `init.checkpoint` (a pre-training
  workdir or an HF directory of `family`), whose architecture and tokenizer it takes, or from
  scratch with the same architecture and tokenizer (`init.load_weights=False`). A resumed run
  takes both from its own workdir. Subclasses build their model in `model()` (the pre-trained
  body under `body_key`) and read their data in `prepare_data` after `setup(workdir)`."""

  family = "bert"  # what `tfjax.inference.load` reads init.checkpoint as
  body_key = "bert"  # where the pre-trained body sits in the fine-tuned model's params
  model_config_cls = BertConfig
  param_axes = PARAM_AXES
  seq_len_field = "max_seq_len"
  task_name: str  # config.task of the subclass

  def validate(self) -> None:
    data, init = self.config.data, self.config.init
    if not init.checkpoint and not data.tokenizer:
      raise ValueError(
        f"task {self.task_name!r} needs a tokenizer: set init.checkpoint (a pre-trained run, "
        f"whose tokenizer and architecture are used) or data.tokenizer ({self.tokenizer_files})"
      )
    if not init.checkpoint and init.load_weights:
      raise ValueError("init.load_weights=True needs init.checkpoint; or set it to False")

  tokenizer_files = "a vocab.txt or sentencepiece .model"  # what data.tokenizer may name

  def pretrained_key(self) -> str | None:
    """The body, when it starts from init.checkpoint's weights: what LoRA (config.lora) freezes.
    The task's head stays trainable; so does nothing else (biases, LayerNorms and, for GPT, the
    embedding table with its added special-token rows are frozen)."""
    init = self.config.init
    return self.body_key if init.checkpoint and init.load_weights else None

  def load_tokenizer(self, source: str) -> Tokenizer:
    """The tokenizer of a workdir, an HF directory or a vocabulary file."""
    return bert_tokenizer.load_bert_tokenizer(source)

  def _pretrained_config(self, checkpoint: str) -> Any:
    """The architecture of init.checkpoint; its errors name the setting to change."""
    try:
      return load.read_config(checkpoint, self.family)[1]
    except (ValueError, FileNotFoundError) as e:
      raise type(e)(f"init.checkpoint: {e}") from e

  def _adopt_architecture(self, architecture: Any, source: str) -> None:
    """Takes the architecture of `source`, so its weights fit (dropout, dtype, remat stay)."""
    self.model_config = adopt_architecture(self.config, self.model_config, architecture, source)

  def setup(self, workdir: str) -> None:
    """Architecture and tokenizer (`self.tokenizer`), from the run to resume in `workdir` or
    from init.checkpoint / data.tokenizer; checks they fit data.max_seq_len."""
    data_cfg, init = self.config.data, self.config.init
    saved = pathlib.Path(workdir) / "config.json"
    if saved.is_file() and json.loads(saved.read_text()).get("task") == self.task_name:
      # A resumed run: its own architecture and tokenizer, whatever init.checkpoint holds now.
      architecture = self.model_config_cls.from_config(json.loads(saved.read_text())["model"])
      self._adopt_architecture(architecture, workdir)
      tokenizer_source = workdir
    else:
      if init.checkpoint:
        self._adopt_architecture(self._pretrained_config(init.checkpoint), init.checkpoint)
      tokenizer_source = data_cfg.tokenizer or init.checkpoint
      if data_cfg.tokenizer and init.checkpoint and init.load_weights:
        self._check_same_tokenizer(data_cfg.tokenizer, init.checkpoint)
    self.tokenizer = self.load_tokenizer(tokenizer_source)
    if self.tokenizer.vocab_size > self.model_config.vocab_size:
      raise ValueError(
        f"the tokenizer of {tokenizer_source} has {self.tokenizer.vocab_size} ids but the model "
        f"only {self.model_config.vocab_size} embeddings; fine-tune with the tokenizer the model "
        "was pre-trained with (leave data.tokenizer empty to take init.checkpoint's)"
      )
    if data_cfg.max_seq_len > self.model_config.max_len:
      raise ValueError(
        f"data.max_seq_len={data_cfg.max_seq_len} is longer than the position table (model."
        f"max_len={self.model_config.max_len}); lower data.max_seq_len"
      )

  def _check_same_tokenizer(self, tokenizer: str, checkpoint: str) -> None:
    """Pre-trained weights read the ids of their own tokenizer: another one is an error."""
    if not same_vocabulary(self.load_tokenizer(tokenizer), self.load_tokenizer(checkpoint)):
      raise ValueError(
        f"data.tokenizer={tokenizer!r} is not the tokenizer init.checkpoint={checkpoint!r} was "
        "pre-trained with (its ids name other pieces); leave data.tokenizer empty to use the "
        "checkpoint's"
      )

  def task_data(
    self, train: Any, evaluation: Any, process_index: int, process_count: int
  ) -> TaskData:
    """Shuffled training batches and every eval example once, from encoded examples (anything
    with `len()` and `rows()`: `pipeline.Examples`)."""
    train_iter = pipeline.examples_train_iterator(
      train, **self.train_iterator_args(process_index, process_count)
    )
    eval_batches = pipeline.eval_batches(evaluation, self.config.train.batch_size)
    return TaskData(train_iter, eval_batches, self.tokenizer.save)

  def init_params(self, rng: jax.Array) -> Any:
    """Fresh parameters, from one row of data.max_seq_len tokens (a row of a multiple-choice
    batch holds several: `seq_len` counts them all)."""
    tokens = jnp.zeros((1, self.config.data.max_seq_len), jnp.int32)
    return self.model().init(rng, tokens)["params"]

  def pretrained_body(self) -> Any:
    """The pre-trained body of init.checkpoint, as it goes under `body_key` in the params:
    here BERT's encoder (a family whose body differs overrides this)."""
    return load.load(self.config.init.checkpoint, "bert", head="model", tokenizer=False).params

  def initial_params(self, params: Any) -> Any:
    init = self.config.init
    if not init.load_weights:
      return params
    body = self.pretrained_body()
    expected = jax.tree.map(lambda x: (x.shape, x.dtype), params[self.body_key])
    got = jax.tree.map(lambda x: (x.shape, x.dtype), body)
    if expected != got:
      raise ValueError(
        f"the pre-trained model in init.checkpoint={init.checkpoint!r} does not fit the model; "
        "fine-tune with the architecture it was trained with (leave the model.* sizes unset)"
      )
    logging.info("Fine-tuning from the pre-trained %s of %s", self.body_key, init.checkpoint)
    return {**params, self.body_key: body}

  def flops_per_token(self, abstract_params: Any) -> float:
    return bert_flops_per_token(self.model_config, abstract_params, self.config.data.max_seq_len)
