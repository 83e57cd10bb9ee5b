"""The causal language-modelling task: next-token loss of a GPT on token windows."""

from typing import Any

import jax

from tfjax.models.gpt import GPT
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
