"""Fine-tuning a pre-trained GPT as GPT-1 did (Radford et al. 2018, §3.2-3.3, §4.1).

The input transformations of Figure 1 turn each example into one or more token sequences with
three added tokens (start, delimiter, extract: new embedding rows, drawn as the others were);
a linear layer on the extract token's final state gives the logits. The objective is
L = L_task + lm_coef * L_LM (Eq. 5; lm_coef = 0.5 in the paper, 0 turns the auxiliary LM loss
off), the LM loss being the next-token cross-entropy over the real tokens of the same sequences.
Classes (classification, entailment, similarity as classes) and answers (multiple choice) take
a cross-entropy; a float target (similarity as regression) the squared error, reported as
Pearson and Spearman correlations.
"""

import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.stats

from tfjax.data import gpt_fine_tuning, pipeline
from tfjax.data.gpt_inputs import SpecialTokens
from tfjax.data.tokenizers.base import Tokenizer
from tfjax.data.tokenizers.sentencepiece import SentencePieceTokenizer
from tfjax.inference import load
from tfjax.models import gpt
from tfjax.models.gpt import FINE_TUNING_PARAM_AXES, GPTConfig, GPTForFineTuning
from tfjax.tasks.fine_tuning import FineTuningTask
from tfjax.tasks.lm import gpt_flops_per_token
from tfjax.training.step import LossFn, accuracy, cross_entropy_loss, dropout_rngs
from tfjax.training.task import TaskData, write_output

NUM_ADDED_TOKENS = 3  # start, delimiter, extract (§3.3)


def _weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
  return (values * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def sequence_lm_losses(lm_logits: jax.Array, tokens: jax.Array, lm_weights: jax.Array) -> jax.Array:
  """[b] the next-token cross-entropy of each example: per sequence the mean over its real
  tokens, then the mean over the example's sequences (as the authors' code, which averages per
  sequence)."""
  losses = optax.softmax_cross_entropy_with_integer_labels(lm_logits[..., :-1, :], tokens[..., 1:])
  mask = lm_weights[..., :-1]  # position t predicts token t + 1
  per_sequence = (losses * mask).sum(-1) / jnp.maximum(mask.sum(-1), 1.0)  # [b, c]
  return per_sequence.mean(-1)


def fine_tuning_loss_fn(model: GPTForFineTuning, lm_coef: float, regression: bool) -> LossFn:
  """L_task + lm_coef * L_LM, means over the (weighted) examples; aux["num_tokens"] counts
  examples, so accumulated micro-batches give the same mean."""

  def loss_fn(
    params: Any, batch: dict, dropout_rng: jax.Array | None, deterministic: bool
  ) -> tuple[jax.Array, dict]:
    logits, lm_logits = model.apply(
      {"params": params},
      batch["tokens"],
      batch["extract_positions"],
      deterministic=deterministic,
      lm=lm_coef > 0,
      rngs=dropout_rngs(dropout_rng, deterministic),
    )
    label = batch["label"]
    weights = batch.get("weights")
    w = jnp.ones(label.shape, jnp.float32) if weights is None else weights.astype(jnp.float32)
    if regression:
      task_loss = _weighted_mean((logits[:, 0] - label) ** 2, w)
      aux = {"mse": task_loss}
    else:
      task_loss, _ = cross_entropy_loss(logits, label, w)
      aux = {"accuracy": accuracy(logits, label, w)}
    aux.update(num_tokens=w.sum(), task_loss=task_loss)
    if lm_coef == 0:
      return task_loss, aux
    aux["lm_loss"] = _weighted_mean(
      sequence_lm_losses(lm_logits, batch["tokens"], batch["lm_weights"]), w
    )
    return task_loss + lm_coef * aux["lm_loss"], aux

  return loss_fn


class GPTFineTuningTask(FineTuningTask):
  """A pre-trained GPT (init.checkpoint: a tfjax `lm` workdir or an HF GPT directory) fine-tuned
  with one of GPT-1's input transformations (`data.transformation`); `init.load_weights=False`
  trains the same model from scratch, the baseline of the transfer claim. Reports validation and
  test accuracy (or correlations) beside the majority-class baseline."""

  task_name = "gpt_fine_tuning"
  family = "gpt"
  body_key = "gpt"
  model_config_cls = GPTConfig
  param_axes = FINE_TUNING_PARAM_AXES
  tokenizer_files = "a sentencepiece .model, or a directory holding a GPT's tokenizer"
  run_identity = (
    "data.name",
    "data.transformation",
    "data.text_field",
    "data.text_pair_field",
    "data.choices_field",
    "data.label_field",
    "data.num_choices",
    "data.train_split",
    "data.tokenizer",
    "data.max_seq_len",
    "data.truncate",
    "init.checkpoint",
    "init.load_weights",
    "fine_tuning.lm_coef",
    "train.seed",
  )

  def validate(self) -> None:
    super().validate()
    gpt_fine_tuning.check_data_config(self.config.data)
    lm_coef = self.config.fine_tuning.lm_coef
    if lm_coef < 0:
      raise ValueError(f"fine_tuning.lm_coef={lm_coef} must be >= 0 (0.5: GPT-1; 0: no LM loss)")

  @property
  def seq_len(self) -> int:
    """Tokens of one row: every sequence of an example."""
    return self.config.data.max_seq_len * gpt_fine_tuning.sequences_per_example(self.config.data)

  def load_tokenizer(self, source: str) -> Tokenizer:
    """A sentencepiece .model; the tokenizer a workdir saved (pre-training or this task's);
    an HF GPT directory's."""
    path = pathlib.Path(source)
    if path.suffix == ".model":
      return SentencePieceTokenizer.load(path)
    if load.is_hf_directory(path):
      return load.load_tokenizer(path, "gpt")
    saved = load.saved_tokenizer(path)
    if saved is None:
      raise FileNotFoundError(
        f"{source} holds no tokenizer (tokenizer.model, or vocab.json + merges.txt with "
        "tokenizer_config.json); give the pre-training workdir or HF directory it came with"
      )
    return saved

  @property
  def special_tokens(self) -> SpecialTokens:
    """Start, delimiter and extract: the ids after the pre-trained vocabulary."""
    return SpecialTokens.after_vocab(self.model_config.vocab_size)

  def prepare_data(self, workdir: str, process_index: int, process_count: int) -> TaskData:
    self.setup(workdir)
    self._data = gpt_fine_tuning.prepare_gpt_data(
      self.config.data, self.tokenizer, self.special_tokens
    )
    return self.task_data(self._data.train, self._data.eval, process_index, process_count)

  def model(self, activation_sharding: Any = None) -> GPTForFineTuning:
    """The pre-trained architecture with NUM_ADDED_TOKENS more embeddings (config.model keeps
    the pre-trained vocab_size, so it still describes the LM it came from)."""
    data = self.config.data
    config = self.model_config.replace(vocab_size=self.model_config.vocab_size + NUM_ADDED_TOKENS)
    if data.transformation == "multiple_choice":
      combine, num_outputs = "choices", 1
    else:
      combine, num_outputs = "sum", self._num_outputs()
    return GPTForFineTuning(
      config,
      num_outputs=num_outputs,
      combine=combine,
      classifier_dropout_rate=self.config.fine_tuning.classifier_dropout_rate,
      activation_sharding=activation_sharding,
    )

  def _num_outputs(self) -> int:
    if self._data.regression:
      return 1
    return len(self._data.label_names)

  def init_params(self, rng: jax.Array) -> Any:
    c = gpt_fine_tuning.sequences_per_example(self.config.data)
    tokens = jnp.zeros((1, c, self.config.data.max_seq_len), jnp.int32)
    return self.model().init(rng, tokens, jnp.zeros((1, c), jnp.int32))["params"]

  def pretrained_body(self) -> Any:
    """The LM of init.checkpoint with start, delimiter and extract appended (`gpt.add_tokens`)."""
    lm = load.load(self.config.init.checkpoint, "gpt", tokenizer=False)
    rng = jax.random.fold_in(jax.random.key(self.config.train.seed), 1)
    return gpt.add_tokens(lm.params, NUM_ADDED_TOKENS, rng, self.model_config.init_std)

  def loss_fn(self, model: GPTForFineTuning) -> LossFn:
    return fine_tuning_loss_fn(model, self.config.fine_tuning.lm_coef, self._data.regression)

  def flops_per_token(self, abstract_params: Any) -> float:
    """A GPT's, less the tied LM head's matmul when lm_coef = 0 skips it."""
    flops = gpt_flops_per_token(
      self.model_config, abstract_params["gpt"], self.config.data.max_seq_len
    )
    if self.config.fine_tuning.lm_coef == 0:
      vocab = self.model_config.vocab_size + NUM_ADDED_TOKENS
      flops -= 6 * vocab * self.model_config.d_model
    return flops

  def finish(self, params: Any, workdir: str, final: dict[str, Any], data: TaskData) -> list[str]:
    model = self.model()
    predict = jax.jit(
      lambda p, b: model.apply({"params": p}, b["tokens"], b["extract_positions"], lm=False)[0]
    )
    inputs = lambda b: {k: b[k] for k in ("tokens", "extract_positions")}
    lines, results = [], {}
    for split, examples in (("validation", self._data.eval), ("test", self._data.test)):
      if examples is None:
        continue
      batches = pipeline.eval_batches(examples, self.config.train.batch_size)
      outputs = np.concatenate(
        [np.asarray(predict(params, inputs(b)))[b["weights"] > 0] for b in batches]
      )
      results[split] = self._score(outputs, examples.label)
      lines.append(f"{split}: " + ", ".join(f"{k} {v:.3f}" for k, v in results[split].items()))
    if self._data.test is not None:
      final.update({f"test_{k}": v for k, v in results["test"].items()})
      lines.append(self._baseline(final))
    write_output(workdir, "scores.json", json.dumps(results, indent=2) + "\n")
    return [f"step {final['step']} ({self.config.data.transformation}):", *lines]

  def _score(self, outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    if self._data.regression:
      predictions = outputs[:, 0]
      return {
        "pearson": float(scipy.stats.pearsonr(predictions, labels)[0]),
        "spearman": float(scipy.stats.spearmanr(predictions, labels)[0]),
        "mse": float(np.mean((predictions - labels) ** 2)),
      }
    return {"accuracy": float(np.mean(outputs.argmax(-1) == labels))}

  def _baseline(self, final: dict[str, Any]) -> str:
    """What the test score means next to a model that ignores the input."""
    train, test = self._data.train.label, self._data.test.label
    if self._data.regression:
      final["test_mean_prediction_mse"] = float(np.mean((test - train.mean()) ** 2))
      return f"(predicting the training mean: mse {final['test_mean_prediction_mse']:.3f})"
    majority = np.bincount(train).argmax()
    final["test_majority_class_accuracy"] = float(np.mean(test == majority))
    what = "answer position" if self.config.data.transformation == "multiple_choice" else "label"
    return (
      f"(always the most frequent training {what}: "
      f"{final['test_majority_class_accuracy']:.3f} on {len(test)} examples)"
    )
