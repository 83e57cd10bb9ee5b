"""The causal language-modelling task: next-token loss of a GPT on token windows."""

from typing import Any

import jax

from tfjax.models.gpt import GPT, GPTConfig
from tfjax.training.metrics import transformer_flops_per_token
from tfjax.training.step import LossFn, cross_entropy_loss


def lm_loss_fn(model: GPT) -> LossFn:
  """Mean next-token cross-entropy of `model` on {"inputs", "targets"} [b, t] batches."""

  def loss_fn(
    params: Any, batch: dict, dropout_rng: jax.Array | None, deterministic: bool
  ) -> tuple[jax.Array, dict]:
    rngs = {} if deterministic else {"dropout": dropout_rng}
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
