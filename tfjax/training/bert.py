"""BERT's tasks on the shared trainer: MLM + NSP pre-training (Devlin et al. 2018, §3.1), and
fine-tuning a sequence classifier (§4.1) on `FineTuningTask`, the base question answering
(bert_qa.py, §4.2) shares."""

import dataclasses
import json
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from tfjax.data import classification, pretraining
from tfjax.data.tokenizers import bert as bert_tokenizer
from tfjax.inference import load, pipelines
from tfjax.models.bert import BertConfig, BertForPreTraining, BertForSequenceClassification
from tfjax.training.metrics import transformer_flops_per_token
from tfjax.training.step import LossFn, accuracy, cross_entropy_loss, dropout_rngs
from tfjax.training.task import MAY_CHANGE_ON_RESUME, Task, TaskData


def bert_flops_per_token(
  config: BertConfig, params: Any, seq_len: int, decoded_per_token: float = 0.0
) -> float:
  """Training FLOPs per token: 6N + attention, where N leaves out the embedding tables (lookups,
  no matmul) but adds the tied MLM decoder (V x d) for the share of tokens it decodes:
  `decoded_per_token` = max_predictions_per_seq / max_seq_len in pre-training, 0 when
  fine-tuning."""
  num_params = sum(x.size for x in jax.tree.leaves(params))
  tables = (config.vocab_size + config.max_len + config.type_vocab_size) * config.d_model
  decoder = decoded_per_token * config.vocab_size * config.d_model
  return transformer_flops_per_token(
    num_params - tables + decoder, config.num_layers, seq_len, config.d_model
  )


# ------------------------------------------------------------------------------ pre-training


def pretraining_loss_fn(model: BertForPreTraining) -> LossFn:
  """MLM loss (mean over the masked positions) + NSP loss (§3.1, A.2).

  Every term is a mean over the masked positions: the NSP loss (and accuracy) of an example
  counts once per masked token it holds. The loss then splits exactly over devices and
  micro-batches, which the step weighs by aux["num_tokens"] (the masked count): every parallel
  mode and accumulation give the one-device loss. BERT's NSP loss is a plain mean over
  examples; with ~15% of every example masked this weighs longer pairs a little more.
  """

  def loss_fn(
    params: Any, batch: dict, dropout_rng: jax.Array | None, deterministic: bool
  ) -> tuple[jax.Array, dict]:
    mlm_logits, nsp_logits = model.apply(
      {"params": params},
      batch["tokens"],
      batch["segment_ids"],
      batch["attention_mask"],
      masked_positions=batch["masked_positions"],
      deterministic=deterministic,
      rngs=dropout_rngs(dropout_rng, deterministic),
    )  # [b, P, V], [b, 2]
    mlm_loss, num_masked = cross_entropy_loss(
      mlm_logits, batch["masked_ids"], batch["masked_weights"]
    )
    masked_per_example = batch["masked_weights"].sum(axis=-1)  # [b]
    labels = batch["next_sentence_label"]
    nsp_loss, _ = cross_entropy_loss(nsp_logits, labels, masked_per_example)
    aux = {
      "num_tokens": num_masked,
      "mlm_loss": mlm_loss,
      "nsp_loss": nsp_loss,
      "mlm_accuracy": accuracy(mlm_logits, batch["masked_ids"], batch["masked_weights"]),
      "nsp_accuracy": accuracy(nsp_logits, labels, masked_per_example),
    }
    return mlm_loss + nsp_loss, aux

  return loss_fn


class BertPretrainingTask(Task):
  """MLM + NSP on sentence pairs of a corpus; shows fill-mask predictions at the end."""

  model_config_cls = BertConfig
  run_identity = (
    "data.name",
    "data.text_field",
    "data.train_split",
    "data.tokenizer",
    "data.lowercase",
    "data.max_seq_len",
    "data.max_predictions_per_seq",
    "data.masked_lm_prob",
    "data.short_seq_prob",
    "train.seed",
  )

  def validate(self) -> None:
    data = self.config.data
    if data.max_seq_len > self.model_config.max_len:
      raise ValueError(
        f"data.max_seq_len={data.max_seq_len} is longer than the position table (model.max_len="
        f"{self.model_config.max_len}); lower data.max_seq_len or raise model.max_len"
      )
    if not self.config.sample.fill_mask or not all(
      "[MASK]" in t for t in self.config.sample.fill_mask
    ):
      raise ValueError(
        "sample.fill_mask must be texts with a [MASK], e.g. ('Paris is the [MASK] of France.',)"
      )

  def prepare_data(self, workdir: str, process_index: int, process_count: int) -> TaskData:
    data_cfg, train_cfg = self.config.data, self.config.train
    self._data = pretraining.prepare_pretraining_data(
      data_cfg, vocab_size=self.model_config.vocab_size
    )
    self.tokenizer = self._data.tokenizer
    train_iter = pretraining.train_iterator(
      self._data,
      data_cfg,
      train_cfg.batch_size // process_count,
      seed=train_cfg.seed,
      process_index=process_index,
      process_count=process_count,
    )
    # Seed 0, not train.seed: runs with other seeds are scored on the same examples.
    eval_batches = pretraining.eval_batches(
      self._data, data_cfg, train_cfg.batch_size, train_cfg.eval_batches, seed=0
    )
    return TaskData(train_iter, eval_batches, data_cfg.max_seq_len, self.tokenizer.save)

  def model(self, activation_sharding: Any = None) -> BertForPreTraining:
    return BertForPreTraining(self.model_config, activation_sharding=activation_sharding)

  def init_params(self, rng: jax.Array) -> Any:
    tokens = jnp.zeros((1, self.config.data.max_seq_len), jnp.int32)
    return self.model().init(rng, tokens)["params"]

  def loss_fn(self, model: BertForPreTraining) -> LossFn:
    return pretraining_loss_fn(model)

  def flops_per_token(self, abstract_params: Any) -> float:
    data = self.config.data
    decoded = data.max_predictions_per_seq / data.max_seq_len  # MLM decodes only these
    return bert_flops_per_token(self.model_config, abstract_params, data.max_seq_len, decoded)

  def finish(self, params: Any, workdir: str, final: dict[str, Any], data: TaskData) -> list[str]:
    # The loss weighs NSP by masked tokens (see pretraining_loss_fn); report the paper's metric.
    model = self.model()
    inputs = ("tokens", "segment_ids", "attention_mask", "masked_positions")
    predict = jax.jit(
      lambda p, t, s, a, m: model.apply({"params": p}, t, s, a, masked_positions=m)[1].argmax(-1)
    )
    correct = [
      np.asarray(predict(params, *(b[k] for k in inputs))) == b["next_sentence_label"]
      for b in data.eval_batches
    ]
    final["eval_nsp_accuracy_per_example"] = float(np.mean(np.concatenate(correct)))
    sample = self.config.sample
    results = pipelines.fill_mask(
      self.model_config, params, self.tokenizer, list(sample.fill_mask), top_k=sample.top_k
    )
    lines = []
    for text, candidates in zip(sample.fill_mask, results, strict=True):
      if candidates and isinstance(candidates[0], list):  # several masks: the first one's
        candidates = candidates[0]
      guesses = ", ".join(f"{c['token_str']!r} {c['score']:.2f}" for c in candidates)
      lines.append(f"  {text!r}: {guesses}")
    if jax.process_index() == 0:
      with open(os.path.join(workdir, "fill_mask.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return [
      f"step {final['step']}: validation MLM accuracy {final['eval_mlm_accuracy']:.3f} "
      f"(loss {final['eval_mlm_loss']:.3f}), NSP accuracy "
      f"{final['eval_nsp_accuracy_per_example']:.3f} (chance 0.5)",
      "fill-mask:",
      *lines,
    ]


# ------------------------------------------------------------------------------ fine-tuning


def classification_loss_fn(model: BertForSequenceClassification) -> LossFn:
  """Mean cross-entropy over the (weighted) examples; aux["num_tokens"] counts examples."""

  def loss_fn(
    params: Any, batch: dict, dropout_rng: jax.Array | None, deterministic: bool
  ) -> tuple[jax.Array, dict]:
    logits = model.apply(
      {"params": params},
      batch["tokens"],
      batch["segment_ids"],
      batch["attention_mask"],
      deterministic=deterministic,
      rngs=dropout_rngs(dropout_rng, deterministic),
    )  # [b, num_labels]
    weights = batch.get("weights")
    loss, num_examples = cross_entropy_loss(logits, batch["label"], weights)
    return loss, {
      "num_tokens": num_examples,
      "accuracy": accuracy(logits, batch["label"], weights),
    }

  return loss_fn


# The architecture a fine-tuning run takes from its pre-trained checkpoint.
_ARCHITECTURE = tuple(
  f.name for f in dataclasses.fields(BertConfig) if f.name not in MAY_CHANGE_ON_RESUME
)


class FineTuningTask(Task):
  """What every fine-tuning task shares: it starts from `init.checkpoint` (a pre-training
  workdir or an HF BERT directory), whose architecture and tokenizer it takes, or from scratch
  with the same architecture and tokenizer (`init.load_weights=False`). A resumed run takes
  both from its own workdir. Subclasses build their model in `model()` and read their data in
  `prepare_data` after `setup(workdir)`."""

  model_config_cls = BertConfig
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
    changed = {
      name: (getattr(self.model_config, name), getattr(architecture, name))
      for name in _ARCHITECTURE
      if getattr(self.model_config, name) != getattr(architecture, name)
    }
    if changed:
      logging.warning(
        "model architecture taken from %s: %s",
        source,
        ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()),
      )
      for name, (_, value) in changed.items():
        self.config.model[name] = value
      self.model_config = BertConfig.from_config(self.config.model)

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
        self._adopt_architecture(load.read_config(init.checkpoint, "bert")[1], init.checkpoint)
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
    data_cfg, train_cfg = self.config.data, self.config.train
    train_iter = classification.train_iterator(
      train,
      train_cfg.batch_size // process_count,
      seed=train_cfg.seed,
      process_index=process_index,
      process_count=process_count,
    )
    eval_batches = classification.eval_batches(evaluation, train_cfg.batch_size)
    return TaskData(train_iter, eval_batches, data_cfg.max_seq_len, self.tokenizer.save)

  def init_params(self, rng: jax.Array) -> Any:
    tokens = jnp.zeros((1, self.config.data.max_seq_len), jnp.int32)
    return self.model().init(rng, tokens)["params"]

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
    return bert_flops_per_token(self.model_config, abstract_params, self.config.data.max_seq_len)


class ClassificationTask(FineTuningTask):
  """A sequence classifier (single texts or pairs): the baseline of the transfer-learning claim
  is the same task with `init.load_weights=False`. Reports test accuracy."""

  task_name = "classification"
  run_identity = (
    "data.name",
    "data.text_field",
    "data.text_pair_field",
    "data.label_field",
    "data.train_split",
    "data.tokenizer",
    "data.max_seq_len",
    "data.truncate",
    "init.checkpoint",
    "init.load_weights",
    "train.seed",
  )

  def prepare_data(self, workdir: str, process_index: int, process_count: int) -> TaskData:
    self.setup(workdir)
    self._data = classification.prepare_classification_data(self.config.data, self.tokenizer)
    return self.task_data(self._data.train, self._data.eval, process_index, process_count)

  def model(self, activation_sharding: Any = None) -> BertForSequenceClassification:
    return BertForSequenceClassification(
      self.model_config, num_labels=self._data.num_labels, activation_sharding=activation_sharding
    )

  def loss_fn(self, model: BertForSequenceClassification) -> LossFn:
    return classification_loss_fn(model)

  def finish(self, params: Any, workdir: str, final: dict[str, Any], data: TaskData) -> list[str]:
    lines = [
      f"step {final['step']}: validation accuracy {final['eval_accuracy']:.3f} "
      f"(loss {final['eval_loss']:.3f})"
    ]
    test = self._data.test
    if test is not None:
      model = self.model()
      predict = jax.jit(lambda p, b: model.apply({"params": p}, *b).argmax(-1))
      batches = classification.eval_batches(test, self.config.train.batch_size)
      predictions = [
        (np.asarray(predict(params, (b["tokens"], b["segment_ids"], b["attention_mask"]))), b)
        for b in batches
      ]
      correct = sum(float(((p == b["label"]) * b["weights"]).sum()) for p, b in predictions)
      final["test_accuracy"] = correct / len(test)
      majority = np.bincount(self._data.train.label, minlength=self._data.num_labels).argmax()
      final["test_majority_class_accuracy"] = float(np.mean(test.label == majority))
      lines.append(
        f"test accuracy {final['test_accuracy']:.3f} on {len(test)} examples (always the most "
        f"frequent training label: {final['test_majority_class_accuracy']:.3f})"
      )
    return lines
