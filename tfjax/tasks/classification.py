"""Fine-tuning BERT as a sequence classifier, on single texts or pairs (Devlin et al. 2018,
§4.1): the pooled [CLS] output, a linear layer, cross-entropy; or on multiple choice (§4.4):
each answer paired with the text, one score each, a softmax over them. Reports test accuracy."""

from typing import Any

import flax.linen as nn
import jax
import numpy as np

from tfjax.data import classification, pipeline
from tfjax.models.bert import BertForMultipleChoice, BertForSequenceClassification
from tfjax.tasks.bert_pretraining import apply_bert, bert_inputs
from tfjax.tasks.fine_tuning import FineTuningTask
from tfjax.training.step import LossFn, accuracy, cross_entropy_loss
from tfjax.training.task import TaskData


def classification_loss_fn(model: nn.Module) -> LossFn:
  """Mean cross-entropy over the (weighted) examples; aux["num_tokens"] counts examples."""

  def loss_fn(
    params: Any, batch: dict, dropout_rng: jax.Array | None, deterministic: bool
  ) -> tuple[jax.Array, dict]:
    # [b, num_labels], or [b, choices]
    logits = apply_bert(model, params, batch, dropout_rng, deterministic)
    weights = batch.get("weights")
    loss, num_examples = cross_entropy_loss(logits, batch["label"], weights)
    return loss, {
      "num_tokens": num_examples,
      "accuracy": accuracy(logits, batch["label"], weights),
    }

  return loss_fn


class ClassificationTask(FineTuningTask):
  """A sequence classifier (single texts or pairs) or a multiple-choice scorer
  (`data.choices_field`): the baseline of the transfer-learning claim is the same task with
  `init.load_weights=False`. Reports test accuracy."""

  task_name = "classification"
  run_identity = (
    "data.name",
    "data.text_field",
    "data.text_pair_field",
    "data.label_field",
    "data.choices_field",
    "data.num_choices",
    "data.train_split",
    "data.tokenizer",
    "data.max_seq_len",
    "data.truncate",
    "init.checkpoint",
    "init.load_weights",
    "train.seed",
  )

  @property
  def seq_len(self) -> int:
    """Tokens of one row: a sequence per answer for multiple choice."""
    choices = self.config.data.get("num_choices") if self.config.data.get("choices_field") else 1
    return self.config.data.max_seq_len * choices

  def prepare_data(self, workdir: str, process_index: int, process_count: int) -> TaskData:
    self.setup(workdir)
    self._data = classification.prepare_classification_data(self.config.data, self.tokenizer)
    return self.task_data(self._data.train, self._data.eval, process_index, process_count)

  def model(self, activation_sharding: Any = None) -> nn.Module:
    """A sequence classifier, or with data.choices_field one score per answer (§4.4)."""
    if self.config.data.get("choices_field"):
      return BertForMultipleChoice(self.model_config, activation_sharding=activation_sharding)
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
      predict = jax.jit(lambda p, b: apply_bert(model, p, b).argmax(-1))
      batches = pipeline.eval_batches(test, self.config.train.batch_size)
      predictions = [(np.asarray(predict(params, bert_inputs(b))), b) for b in batches]
      correct = sum(float(((p == b["label"]) * b["weights"]).sum()) for p, b in predictions)
      final["test_accuracy"] = correct / len(test)
      majority = np.bincount(self._data.train.label, minlength=self._data.num_labels).argmax()
      final["test_majority_class_accuracy"] = float(np.mean(test.label == majority))
      lines.append(
        f"test accuracy {final['test_accuracy']:.3f} on {len(test)} examples (always the most "
        f"frequent training label: {final['test_majority_class_accuracy']:.3f})"
      )
    return lines
