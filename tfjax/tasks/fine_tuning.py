"""What every BERT fine-tuning task shares (Devlin et al. 2018, §4): the start from a pre-trained
encoder (a tfjax pre-training workdir or an HF BERT directory), its architecture and tokenizer,
and the batches of encoded examples."""

import json
import pathlib
from typing import Any

import jax
from absl import logging

from tfjax.data import classification, pipeline
from tfjax.data.tokenizers import bert as bert_tokenizer
from tfjax.inference import load
from tfjax.models.bert import PARAM_AXES, BertConfig
from tfjax.tasks.bert_pretraining import bert_flops_per_token
from tfjax.training.task import Task, TaskData, adopt_architecture


def _pretrained_config(checkpoint: str) -> BertConfig:
  """The architecture of init.checkpoint; its errors name the setting to change."""
  try:
    return load.read_config(checkpoint, "bert")[1]
  except (ValueError, FileNotFoundError) as e:
    raise type(e)(f"init.checkpoint: {e}") from e


class FineTuningTask(Task):
  """What every fine-tuning task shares: it starts from `init.checkpoint` (a pre-training
  workdir or an HF BERT directory), whose architecture and tokenizer it takes, or from scratch
  with the same architecture and tokenizer (`init.load_weights=False`). A resumed run takes
  both from its own workdir. Subclasses build their model in `model()` and read their data in
  `prepare_data` after `setup(workdir)`."""

  model_config_cls = BertConfig
  param_axes = PARAM_AXES
  seq_len_field = "max_seq_len"
  task_name: str  # config.task of the subclass

  def validate(self) -> None:
    data, init = self.config.data, self.config.init
    if not init.checkpoint and not data.tokenizer:
      raise ValueError(
        f"task {self.task_name!r} needs a tokenizer: set init.checkpoint (a pre-trained run, "
        "whose tokenizer and architecture are used) or data.tokenizer (a vocab.txt or "
        "sentencepiece .model)"
      )
    if not init.checkpoint and init.load_weights:
      raise ValueError("init.load_weights=True needs init.checkpoint; or set it to False")

  def _adopt_architecture(self, architecture: BertConfig, source: str) -> None:
    """Takes the architecture of `source`, so its weights fit (dropout, dtype, remat stay)."""
    self.model_config = adopt_architecture(self.config, self.model_config, architecture, source)

  def setup(self, workdir: str) -> None:
    """Architecture and tokenizer (`self.tokenizer`), from the run to resume in `workdir` or
    from init.checkpoint / data.tokenizer; checks they fit data.max_seq_len."""
    data_cfg, init = self.config.data, self.config.init
    saved = pathlib.Path(workdir) / "config.json"
    if saved.is_file() and json.loads(saved.read_text()).get("task") == self.task_name:
      # A resumed run: its own architecture and tokenizer, whatever init.checkpoint holds now.
      self._adopt_architecture(
        BertConfig.from_config(json.loads(saved.read_text())["model"]), workdir
      )
      tokenizer_source = workdir
    else:
      if init.checkpoint:
        self._adopt_architecture(_pretrained_config(init.checkpoint), init.checkpoint)
      tokenizer_source = data_cfg.tokenizer or init.checkpoint
    self.tokenizer = bert_tokenizer.load_bert_tokenizer(tokenizer_source)
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

  def task_data(
    self, train: Any, evaluation: Any, process_index: int, process_count: int
  ) -> TaskData:
    """Shuffled training batches and every eval example once, from encoded examples (anything
    with `len()` and `rows()`, as `classification.ClassificationExamples`)."""
    train_iter = classification.train_iterator(
      train, **self.train_iterator_args(process_index, process_count)
    )
    eval_batches = pipeline.eval_batches(evaluation, self.config.train.batch_size)
    return TaskData(train_iter, eval_batches, self.tokenizer.save)

  def initial_params(self, params: Any) -> Any:
    init = self.config.init
    if not init.load_weights:
      return params
    encoder = load.load(init.checkpoint, "bert", head="model", tokenizer=False).params
    expected = jax.tree.map(lambda x: (x.shape, x.dtype), params["bert"])
    got = jax.tree.map(lambda x: (x.shape, x.dtype), encoder)
    if expected != got:
      raise ValueError(
        f"the encoder of init.checkpoint={init.checkpoint!r} does not fit the model; fine-tune "
        "with the architecture it was trained with (leave the model.* sizes unset)"
      )
    logging.info("Fine-tuning from the encoder of %s", init.checkpoint)
    return {**params, "bert": encoder}

  def flops_per_token(self, abstract_params: Any) -> float:
    return bert_flops_per_token(self.model_config, abstract_params, self.seq_len)
