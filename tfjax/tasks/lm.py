"""The causal language-modelling task: next-token loss of a GPT on token windows."""

import math
from typing import Any

import jax
import numpy as np

from tfjax.data import lm as lm_data
from tfjax.inference import generation
from tfjax.models.gpt import GPT, PARAM_AXES, GPTConfig
from tfjax.training.metrics import transformer_flops_per_token
from tfjax.training.step import LossFn, cross_entropy_loss, dropout_rngs
from tfjax.training.task import Task, TaskData, write_output


def lm_loss_fn(model: GPT) -> LossFn:
  """Mean next-token cross-entropy of `model` on {"inputs", "targets"} [b, t] batches."""

  def loss_fn(
    params: Any, batch: dict, dropout_rng: jax.Array | None, deterministic: bool
  ) -> tuple[jax.Array, dict]:
    rngs = dropout_rngs(dropout_rng, deterministic)
    logits = model.apply(
      {"params": params}, batch["inputs"], deterministic=deterministic, rngs=rngs
    )  # [b, t, V]
    loss, num_tokens = cross_entropy_loss(logits, batch["targets"], batch.get("weights"))
    return loss, {"num_tokens": num_tokens}

  return loss_fn


def gpt_flops_per_token(config: GPTConfig, params: Any, seq_len: int) -> float:
  """Training FLOPs per token of a GPT; N excludes the position table (a lookup, no matmul)."""
  num_params = sum(x.size for x in jax.tree.leaves(params))
  return transformer_flops_per_token(
    num_params - config.max_len * config.d_model, config.num_layers, seq_len, config.d_model
  )


class LanguageModelTask(Task):
  """GPT on windows of a tokenized corpus; reports perplexity beside a unigram model's, and
  samples continuations of `config.sample.prompts` at the end."""

  model_config_cls = GPTConfig
  param_axes = PARAM_AXES
  run_identity = ("data.name", "data.text_field", "data.train_split", "data.seq_len", "train.seed")

  def validate(self) -> None:
    model_config, seq_len, sample = self.model_config, self.config.data.seq_len, self.config.sample
    if seq_len > model_config.max_len:
      raise ValueError(
        f"data.seq_len={seq_len} is longer than the position table (model.max_len="
        f"{model_config.max_len}); lower data.seq_len or raise model.max_len"
      )
    if not 1 <= sample.max_new_tokens < model_config.max_len:
      raise ValueError(
        f"sample.max_new_tokens={sample.max_new_tokens} must be in [1, model.max_len="
        f"{model_config.max_len}) to leave room for the prompt"
      )
    if not sample.prompts or not all(sample.prompts):
      raise ValueError("sample.prompts must be non-empty strings, e.g. ('The city of',)")
    if sample.temperature < 0 or sample.top_k < 0 or not 0 < sample.top_p <= 1:
      raise ValueError(
        f"sample.temperature={sample.temperature} (>= 0), sample.top_k={sample.top_k} (>= 0) "
        f"and sample.top_p={sample.top_p} (in (0, 1]) are out of range"
      )

  def prepare_data(self, workdir: str, process_index: int, process_count: int) -> TaskData:
    data_cfg, train_cfg = self.config.data, self.config.train
    self._data = lm_data.prepare_lm_data(data_cfg, vocab_size=self.model_config.vocab_size)
    self._train_tokens = self._data.tokens(data_cfg.train_split)
    train_iter = lm_data.train_iterator(
      self._train_tokens, data_cfg.seq_len, **self.train_iterator_args(process_index, process_count)
    )
    eval_batches = lm_data.eval_batches(
      self._data.tokens(data_cfg.eval_split),
      data_cfg.seq_len,
      train_cfg.batch_size,
      train_cfg.eval_batches,
    )
    return TaskData(train_iter, eval_batches, self._data.tokenizer.save)

  def model(self, activation_sharding: Any = None) -> GPT:
    return GPT(self.model_config, activation_sharding=activation_sharding)

  def loss_fn(self, model: GPT) -> LossFn:
    return lm_loss_fn(model)

  def summarize(self, metrics: dict[str, float]) -> dict[str, float]:
    return {**metrics, "perplexity": math.exp(min(metrics["loss"], 50.0))}

  def flops_per_token(self, abstract_params: Any) -> float:
    return gpt_flops_per_token(self.model_config, abstract_params, self.seq_len)

  def finish(self, params: Any, workdir: str, final: dict[str, Any], data: TaskData) -> list[str]:
    eval_targets = np.concatenate([np.ravel(batch["targets"]) for batch in data.eval_batches])
    final["unigram_perplexity"] = lm_data.unigram_perplexity(
      self._train_tokens, eval_targets, self.model_config.vocab_size
    )
    sample_cfg = self.config.sample
    samples = generation.complete_texts(
      self.model_config,
      params,
      self._data.tokenizer,
      sample_cfg.prompts,
      max_new_tokens=sample_cfg.max_new_tokens,
      seed=sample_cfg.seed,
      temperature=sample_cfg.temperature,
      top_k=sample_cfg.top_k,
      top_p=sample_cfg.top_p,
    )
    write_output(workdir, "samples.txt", "\n\n".join(samples) + "\n")
    return [
      f"step {final['step']}: validation loss {final['eval_loss']:.3f}, "
      f"perplexity {final['eval_perplexity']:.1f} "
      f"(unigram model on the same tokens: {final['unigram_perplexity']:.1f})",
      "samples:",
      *(f"  {s!r}" for s in samples),
    ]
