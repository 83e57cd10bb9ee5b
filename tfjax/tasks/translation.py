"""The translation task: the original Transformer on sentence pairs, with the paper's label
smoothing, and BLEU of greedy and beam-search translations of the test split at the end
(Vaswani et al. 2017, §5.4, §6.1)."""

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from tfjax.data import seq2seq as translation_data
from tfjax.data.tokenizers import sentencepiece as tokenizer_lib
from tfjax.inference import seq2seq
from tfjax.models.transformer import PARAM_AXES, Transformer, TransformerConfig
from tfjax.tasks.text_metrics import bleu
from tfjax.training import checkpoint, sharding
from tfjax.training.metrics import transformer_flops_per_token
from tfjax.training.step import LossFn, accuracy, cross_entropy_loss, dropout_rngs
from tfjax.training.task import Task, TaskData, write_output


def label_smoothed_loss(
  logits: jax.Array, targets: jax.Array, weights: jax.Array, smoothing: float
) -> tuple[jax.Array, jax.Array]:
  """Token-mean cross-entropy against smoothed targets, and the token count (§5.4, ε_ls).

  The target token gets 1 - ε and every other token ε / (V - 1) (Szegedy et al. 2016), as
  tensor2tensor and Flax's WMT example do; the loss subtracts the entropy of that smoothed
  distribution, so a perfect model scores 0 and ε = 0 is the plain cross-entropy.
  """
  vocab_size = logits.shape[-1]
  confidence = 1.0 - smoothing
  low = smoothing / (vocab_size - 1)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  target_log_prob = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  # -sum_v q_v log p_v, with q = low everywhere and confidence at the target: no [b, t, V]
  # soft-target tensor is built.
  cross_entropy = -(confidence - low) * target_log_prob - low * log_probs.sum(-1)
  entropy = -(confidence * np.log(confidence) + (vocab_size - 1) * low * np.log(low + 1e-20))
  losses = cross_entropy - entropy
  weights = weights.astype(jnp.float32)
  num_tokens = weights.sum()
  return (losses * weights).sum() / jnp.maximum(num_tokens, 1.0), num_tokens


def translation_loss_fn(model: Transformer, smoothing: float) -> LossFn:
  """Label-smoothed loss on packed batches; aux: the plain cross-entropy ("nll") and token
  accuracy, over the target tokens (padding has segment 0 and no weight)."""

  def loss_fn(
    params: Any, batch: dict, dropout_rng: jax.Array | None, deterministic: bool
  ) -> tuple[jax.Array, dict]:
    logits = model.apply(
      {"params": params},
      batch["inputs"],
      batch["decoder_inputs"],
      inputs_segmentation=batch["inputs_segmentation"],
      inputs_positions=batch["inputs_position"],
      decoder_segmentation=batch["decoder_segmentation"],
      decoder_positions=batch["decoder_position"],
      deterministic=deterministic,
      rngs=dropout_rngs(dropout_rng, deterministic),
    )  # [b, t, V]
    weights = batch["decoder_segmentation"] != 0
    loss, num_tokens = label_smoothed_loss(logits, batch["targets"], weights, smoothing)
    nll, _ = cross_entropy_loss(logits, batch["targets"], weights)
    aux = {"nll": nll, "accuracy": accuracy(logits, batch["targets"], weights)}
    return loss, {**aux, "num_tokens": num_tokens}

  return loss_fn


class TranslationTask(Task):
  """Transformer on packed sentence pairs; evaluates the test split with BLEU at the end."""

  model_config_cls = TransformerConfig
  param_axes = PARAM_AXES
  num_inputs = 2  # source and target tokens
  seq_len_field = "max_len"
  run_identity = (
    "data.name",
    "data.source_lang",
    "data.target_lang",
    "data.train_split",
    "data.max_len",
    "train.seed",
  )

  def validate(self) -> None:
    data, decode, model = self.config.data, self.config.decode, self.model_config
    if not 2 <= data.max_len <= model.max_len:
      raise ValueError(
        f"data.max_len={data.max_len} must be in [2, model.max_len={model.max_len}]; lower "
        "data.max_len or raise model.max_len"
      )
    if not 0.0 <= self.config.train.label_smoothing < 1.0:
      raise ValueError(
        f"train.label_smoothing={self.config.train.label_smoothing} must be in [0, 1) "
        "(the paper uses 0.1)"
      )
    if decode.beam_size < 1 or decode.alpha < 0 or decode.extra_len < 0 or decode.batch_size < 1:
      raise ValueError(
        f"decode.beam_size={decode.beam_size} and decode.batch_size={decode.batch_size} must "
        f"be >= 1, decode.alpha={decode.alpha} and decode.extra_len={decode.extra_len} >= 0"
      )
    if not 1 <= decode.average_last <= self.config.train.max_to_keep:
      raise ValueError(
        f"decode.average_last={decode.average_last} must be in [1, train.max_to_keep="
        f"{self.config.train.max_to_keep}]: only kept checkpoints can be averaged"
      )

  def prepare_data(self, workdir: str, process_index: int, process_count: int) -> TaskData:
    data_cfg, train_cfg = self.config.data, self.config.train
    self._data = translation_data.TranslationData(data_cfg, self.model_config.vocab_size)
    tokenizer = self._data.tokenizer
    check_workdir_tokenizer(workdir, tokenizer)
    train_pairs = translation_data.shuffled(self._data.ids(data_cfg.train_split), train_cfg.seed)
    pack = lambda pairs: translation_data.pack_pairs(
      pairs, data_cfg.max_len, tokenizer.bos_id, tokenizer.eos_id, truncate_long=data_cfg.truncate
    )
    train_rows = pack(train_pairs)
    logging.info(
      "Packed %d training pairs into %d rows of %d tokens",
      len(train_pairs),
      len(train_rows["inputs"]),
      data_cfg.max_len,
    )
    train_iter = translation_data.train_iterator(
      train_rows, **self.train_iterator_args(process_index, process_count)
    )
    eval_batches = translation_data.eval_batches(
      pack(self._data.ids(data_cfg.eval_split)), train_cfg.batch_size, train_cfg.eval_batches
    )
    return TaskData(train_iter, eval_batches, tokenizer.save)

  def model(self, activation_sharding: Any = None) -> Transformer:
    return Transformer(self.model_config, activation_sharding=activation_sharding)

  def loss_fn(self, model: Transformer) -> LossFn:
    return translation_loss_fn(model, self.config.train.label_smoothing)

  def summarize(self, metrics: dict[str, float]) -> dict[str, float]:
    return {**metrics, "perplexity": float(np.exp(min(metrics["nll"], 50.0)))}

  def flops_per_token(self, abstract_params: Any) -> float:
    """Per target token, approximately: encoder and decoder weights (sources and targets fill
    rows of the same length), the tied embedding counted once as the output projection, and
    the attention of 3 blocks per layer pair (self, self, cross)."""
    cfg = self.model_config
    num_params = sum(x.size for x in jax.tree.leaves(abstract_params))
    return transformer_flops_per_token(num_params, 3 * cfg.num_layers, self.seq_len, cfg.d_model)

  def finish(self, params: Any, workdir: str, final: dict[str, Any], data: TaskData) -> list[str]:
    decode, data_cfg = self.config.decode, self.config.data
    lines = [
      f"step {final['step']}: validation loss {final['eval_loss']:.3f} (label-smoothed), "
      f"perplexity {final['eval_perplexity']:.2f}, token accuracy {final['eval_accuracy']:.3f}"
    ]
    if decode.average_last > 1:
      shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
      params, steps = checkpoint.average_checkpoints(workdir, shapes, decode.average_last)
      lines.append(f"decoding with the average of the checkpoints of steps {steps}")
      final["averaged_steps"] = steps
    else:
      params = sharding.on_host(params)
    sources, references = self._data.texts(data_cfg.test_split)
    if decode.num_test:
      sources, references = sources[: decode.num_test], references[: decode.num_test]
    tokenizer = self._data.tokenizer
    common = dict(
      truncate=data_cfg.truncate,
      max_source_len=data_cfg.max_len - 1,  # what training saw
      alpha=decode.alpha,
      extra_len=decode.extra_len,
      batch_size=decode.batch_size,
    )
    greedy = seq2seq.translate_texts(
      self.model_config, params, tokenizer, sources, beam_size=0, **common
    )
    beam = seq2seq.translate_texts(
      self.model_config, params, tokenizer, sources, beam_size=decode.beam_size, **common
    )
    scored = {
      "copy the source": bleu(sources, references),
      "greedy": bleu(greedy, references),
      f"beam {decode.beam_size}, alpha {decode.alpha}": bleu(beam, references),
    }
    scores = {name: score for name, (score, _) in scored.items()}
    signature = scored["greedy"][1]
    final["test_bleu_copy_source"] = scores["copy the source"].score
    final["test_bleu_greedy"] = scores["greedy"].score
    final["test_bleu_beam"] = list(scores.values())[-1].score
    final["bleu_signature"] = signature
    rows = zip(sources, references, greedy, beam, strict=True)
    table = "".join("\t".join(" ".join(x.split()) for x in row) + "\n" for row in rows)
    write_output(workdir, "test_translations.tsv", "source\treference\tgreedy\tbeam\n" + table)
    write_output(workdir, "bleu.json", json.dumps({k: str(v) for k, v in scores.items()}, indent=2))
    pair = f"{data_cfg.source_lang}->{data_cfg.target_lang}"
    lines.append(f"test BLEU ({pair}, {len(sources)} sentences, sacrebleu {signature}):")
    lines += [f"  {name:<24} {score.score:5.2f}   ({score})" for name, score in scores.items()]
    lines.append(f"translations: {os.path.join(workdir, 'test_translations.tsv')}")
    return lines


def check_workdir_tokenizer(workdir: str, tokenizer: tokenizer_lib.SentencePieceTokenizer):
  """A workdir's checkpoints belong to the vocabulary saved beside them: a different one (same
  size, other pieces) would silently map every token to another."""
  path = os.path.join(workdir, tokenizer_lib.MODEL_FILE)
  if os.path.exists(path) and tokenizer_lib.SentencePieceTokenizer.load(path).sha256 != (
    tokenizer.sha256
  ):
    raise ValueError(
      f"{workdir} holds a model trained with another vocabulary ({path}); the data's "
      "tokenizer differs (another dataset, split or vocab_size?): use a fresh --workdir"
    )
