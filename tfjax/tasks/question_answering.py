"""Fine-tuning BERT for extractive question answering (SQuAD; Devlin et al. 2018, §4.2) on the
shared trainer: start and end vectors score every token, the loss is the mean of the start and
end cross-entropies, and the answer is the best-scoring span (start <= end) of the context.
Scored with SQuAD's own exact match and F1 (`squad_em_f1`, as the official evaluate-v1.1.py)."""

import collections
import json
import os
import re
import string
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tfjax.data import squad
from tfjax.models.bert import BertForQuestionAnswering
from tfjax.tasks.bert_pretraining import apply_bert, bert_inputs
from tfjax.tasks.fine_tuning import FineTuningTask
from tfjax.training.step import LossFn, accuracy, cross_entropy_loss
from tfjax.training.task import TaskData, write_output


def question_answering_loss_fn(model: BertForQuestionAnswering) -> LossFn:
  """(start cross-entropy + end cross-entropy) / 2, means over the weighted windows (§4.2);
  aux["num_tokens"] counts windows."""

  def loss_fn(
    params: Any, batch: dict, dropout_rng: jax.Array | None, deterministic: bool
  ) -> tuple[jax.Array, dict]:
    start_logits, end_logits = apply_bert(model, params, batch, dropout_rng, deterministic)
    # [b, t] each
    weights = batch.get("weights")
    starts, ends = batch["start_position"], batch["end_position"]
    start_loss, num_windows = cross_entropy_loss(start_logits, starts, weights)
    end_loss, _ = cross_entropy_loss(end_logits, ends, weights)
    both = (start_logits.argmax(-1) == starts) & (end_logits.argmax(-1) == ends)
    w = jnp.ones_like(starts, jnp.float32) if weights is None else weights.astype(jnp.float32)
    return (start_loss + end_loss) / 2, {
      "num_tokens": num_windows,
      "start_accuracy": accuracy(start_logits, starts, weights),
      "end_accuracy": accuracy(end_logits, ends, weights),
      "span_accuracy": (both * w).sum() / jnp.maximum(w.sum(), 1.0),
    }

  return loss_fn


def best_spans(
  start_logits: jax.Array,
  end_logits: jax.Array,
  start_mask: jax.Array,
  end_mask: jax.Array,
  max_answer_length: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(score, start, end), each [b], of the best span of each row: start <= end < start +
  max_answer_length, start where `start_mask`, end where `end_mask`; score = start + end logit.

  An exact search over all pairs ([b, t, t]); Google's run_squad.py searches the 20 best starts
  and ends, which finds the same span unless the best one is outside those. A row with no
  allowed span scores -inf.
  """
  t = start_logits.shape[-1]
  scores = start_logits[:, :, None] + end_logits[:, None, :]  # [b, start, end]
  length = jnp.arange(t)[None, :] - jnp.arange(t)[:, None]  # end - start
  allowed = (length >= 0) & (length < max_answer_length)
  allowed = allowed[None] & start_mask[:, :, None] & end_mask[:, None, :]
  scores = jnp.where(allowed, scores, -jnp.inf).reshape(scores.shape[0], -1)
  best = scores.argmax(-1)
  return scores.max(-1), best // t, best % t


class QuestionAnsweringTask(FineTuningTask):
  """A span predictor fine-tuned from a pre-trained encoder (or from scratch with
  `init.load_weights=False`). Reports SQuAD 1.1 exact match and F1 on the eval split and writes
  its answers to `predictions.json` (id -> text, the official evaluation script's input)."""

  task_name = "question_answering"
  run_identity = (
    "data.name",
    "data.id_field",
    "data.question_field",
    "data.context_field",
    "data.answers_field",
    "data.train_split",
    "data.tokenizer",
    "data.max_seq_len",
    "data.doc_stride",
    "data.max_query_length",
    "init.checkpoint",
    "init.load_weights",
    "train.seed",
  )

  def validate(self) -> None:
    super().validate()
    if self.config.data.max_answer_length < 1:
      raise ValueError(
        f"data.max_answer_length={self.config.data.max_answer_length} must be >= 1 (e.g. 30)"
      )

  def prepare_data(self, workdir: str, process_index: int, process_count: int) -> TaskData:
    self.setup(workdir)
    self._data = squad.prepare_squad_data(self.config.data, self.tokenizer)
    # SquadFeatures has the len()/rows() of ClassificationExamples: the same pipelines serve.
    return self.task_data(self._data.train, self._data.eval, process_index, process_count)

  def model(self, activation_sharding: Any = None) -> BertForQuestionAnswering:
    return BertForQuestionAnswering(self.model_config, activation_sharding=activation_sharding)

  def loss_fn(self, model: BertForQuestionAnswering) -> LossFn:
    return question_answering_loss_fn(model)

  def predict(self, params: Any, batches: list[dict[str, np.ndarray]]) -> dict[str, str]:
    """Answer text of every eval example, from `batches` = eval_batches of the eval windows;
    with data.version_2_with_negative, "" where [CLS] outscores the best span (SQuAD 2.0)."""
    features, max_answer_length = self._data.eval, self.config.data.max_answer_length
    model = self.model()

    @jax.jit
    def spans(params, batch, start_mask, end_mask):
      start_logits, end_logits = apply_bert(model, params, batch)
      null = start_logits[:, 0] + end_logits[:, 0]  # [CLS] as start and end
      return (*best_spans(start_logits, end_logits, start_mask, end_mask, max_answer_length), null)

    results = []
    for k, batch in enumerate(batches):
      rows = np.arange(k * len(batch["tokens"]), (k + 1) * len(batch["tokens"]))
      rows = np.where(rows < len(features), rows, 0)  # eval_batches' padding rows copy window 0
      results.append(jax.device_get(spans(params, bert_inputs(batch), *features.span_masks(rows))))
    scores, starts, ends, null = (
      np.concatenate(r)[: len(features)] for r in zip(*results, strict=True)
    )
    with_null = self.config.data.get("version_2_with_negative", False)
    return squad.best_answers(features, scores, starts, ends, null if with_null else None)

  def finish(self, params: Any, workdir: str, final: dict[str, Any], data: TaskData) -> list[str]:
    predictions = self.predict(params, data.eval_batches)
    scores = evaluate_predictions(self._data.eval.examples, predictions)
    final["eval_exact_match"], final["eval_f1"] = scores["exact_match"], scores["f1"]
    write_output(workdir, "predictions.json", json.dumps(predictions, indent=2, ensure_ascii=False))
    return [
      f"step {final['step']}: validation loss {final['eval_loss']:.3f}, start/end accuracy "
      f"{final['eval_start_accuracy']:.3f}/{final['eval_end_accuracy']:.3f} (per window)",
      f"SQuAD exact match {scores['exact_match']:.1f}, F1 {scores['f1']:.1f} on "
      f"{len(self._data.eval.examples)} questions (BERT-base: 80.8 / 88.5 on SQuAD 1.1 dev)",
      f"answers: {os.path.join(workdir, 'predictions.json')}",
    ]


# ------------------------------------------------------------------------ SQuAD's EM and F1


def normalize_answer(text: str) -> str:
  """SQuAD's normalisation (evaluate-v1.1.py): lowercase, no punctuation, no articles (a, an,
  the), single spaces."""
  text = text.lower()
  text = "".join(c for c in text if c not in _PUNCTUATION)
  text = re.sub(r"\b(a|an|the)\b", " ", text)
  return " ".join(text.split())


_PUNCTUATION = frozenset(string.punctuation)


def _f1(prediction: str, gold: str) -> float:
  pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
  common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
  num_same = sum(common.values())
  if num_same == 0:
    return 0.0
  precision, recall = num_same / len(pred_tokens), num_same / len(gold_tokens)
  return 2 * precision * recall / (precision + recall)


def squad_em_f1(prediction: str, golds: Sequence[str]) -> tuple[float, float]:
  """(exact match, F1), each in [0, 1], of one prediction against its gold answers: the best
  over the golds, as SQuAD 1.1's evaluate-v1.1.py. No golds (a SQuAD 2.0 unanswerable
  question): 1 for an empty prediction, else 0, as evaluate-v2.0.py."""
  if not golds:
    score = float(not normalize_answer(prediction))
    return score, score
  em = max(float(normalize_answer(prediction) == normalize_answer(g)) for g in golds)
  return em, max(_f1(prediction, g) for g in golds)


def evaluate_predictions(
  examples: Sequence[squad.SquadExample], predictions: dict[str, str]
) -> dict[str, float]:
  """{"exact_match", "f1"} in percent over `examples` (an unanswered one scores 0)."""
  if not examples:
    raise ValueError("no examples to score")
  scores = [squad_em_f1(predictions.get(e.id, ""), e.answers) for e in examples]
  em, f1 = np.mean(scores, axis=0) * 100
  return {"exact_match": float(em), "f1": float(f1)}
