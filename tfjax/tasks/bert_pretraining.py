"""BERT pre-training: masked-LM + next-sentence prediction on sentence pairs (Devlin et al.
2018, §3.1, A.2), and what BERT's fine-tuning tasks share with it (its forward on a batch, its
FLOPs per token)."""

from typing import Any

import flax.linen as nn
import jax
import numpy as np

from tfjax.data import pretraining
from tfjax.inference import pipelines
from tfjax.models.bert import PARAM_AXES, BertConfig, BertForPreTraining
from tfjax.training.metrics import transformer_flops_per_token
from tfjax.training.step import LossFn, accuracy, cross_entropy_loss, dropout_rngs
from tfjax.training.task import Task, TaskData, write_output

BERT_INPUTS = ("tokens", "segment_ids", "attention_mask")  # what every BERT head reads


def bert_inputs(batch: dict) -> dict:
  """The batch's BERT_INPUTS alone (a jitted prediction then takes no labels)."""
  return {k: batch[k] for k in BERT_INPUTS}


def apply_bert(
  model: nn.Module,
  params: Any,
  batch: dict,
  dropout_rng: jax.Array | None = None,
  deterministic: bool = True,
  **kwargs: Any,
) -> Any:
  """`model.apply` on the batch's BERT_INPUTS, with dropout from `dropout_rng` unless
  deterministic; `kwargs` go to the model (e.g. masked_positions)."""
  return model.apply(
    {"params": params},
    *(batch[k] for k in BERT_INPUTS),
    deterministic=deterministic,
    rngs=dropout_rngs(dropout_rng, deterministic),
    **kwargs,
  )


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
    mlm_logits, nsp_logits = apply_bert(
      model,
      params,
      batch,
      dropout_rng,
      deterministic,
      masked_positions=batch["masked_positions"],
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
  param_axes = PARAM_AXES
  seq_len_field = "max_seq_len"
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
      self._data, data_cfg, **self.train_iterator_args(process_index, process_count)
    )
    # Seed 0, not train.seed: runs with other seeds are scored on the same examples.
    eval_batches = pretraining.eval_batches(
      self._data, data_cfg, train_cfg.batch_size, train_cfg.eval_batches, seed=0
    )
    return TaskData(train_iter, eval_batches, self.tokenizer.save)

  def model(self, activation_sharding: Any = None) -> BertForPreTraining:
    return BertForPreTraining(self.model_config, activation_sharding=activation_sharding)

  def loss_fn(self, model: BertForPreTraining) -> LossFn:
    return pretraining_loss_fn(model)

  def flops_per_token(self, abstract_params: Any) -> float:
    data = self.config.data
    decoded = data.max_predictions_per_seq / data.max_seq_len  # MLM decodes only these
    return bert_flops_per_token(self.model_config, abstract_params, data.max_seq_len, decoded)

  def finish(self, params: Any, workdir: str, final: dict[str, Any], data: TaskData) -> list[str]:
    # The loss weighs NSP by masked tokens (see pretraining_loss_fn); report the paper's metric.
    model = self.model()
    predict = jax.jit(
      lambda p, b: apply_bert(model, p, b, masked_positions=b["masked_positions"])[1].argmax(-1)
    )
    correct = [
      np.asarray(predict(params, {**bert_inputs(b), "masked_positions": b["masked_positions"]}))
      == b["next_sentence_label"]
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
    report = [
      f"step {final['step']}: validation MLM accuracy {final['eval_mlm_accuracy']:.3f} "
      f"(loss {final['eval_mlm_loss']:.3f}), NSP accuracy "
      f"{final['eval_nsp_accuracy_per_example']:.3f} (chance 0.5)",
      "fill-mask:",
      *lines,
    ]
    write_output(workdir, "fill_mask.txt", "\n".join(lines) + "\n")
    return report
