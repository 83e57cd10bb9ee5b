"""BERT pre-training through the trainer on a tiny config: its outputs, its loss against a numpy
reference, exact resume, its FLOPs count and its config errors."""

import json
import logging
import pathlib

import jax
import numpy as np
import pytest

from tests.tasks.bert_runs import pretrained_params, pretraining_config, train_losses
from tfjax.data.tokenizers.bert import load_bert_tokenizer
from tfjax.models.bert import BertConfig, BertForPreTraining
from tfjax.tasks import registry
from tfjax.tasks.bert_pretraining import bert_flops_per_token, pretraining_loss_fn
from tfjax.training import metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
KEY = jax.random.PRNGKey(0)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """-log softmax(logits)[label], in float64."""
  logits = logits.astype(np.float64)
  top = logits.max(-1, keepdims=True)
  log_z = np.log(np.exp(logits - top).sum(-1)) + top[..., 0]
  return log_z - np.take_along_axis(logits, labels[..., None], -1)[..., 0]


def test_pretraining_writes_its_metrics_fill_mask_tokenizer_and_loss_curve(pretrained):
  workdir, final = pretrained.workdir, pretrained.final
  assert json.loads((workdir / "final_metrics.json").read_text()) == final
  assert final["step"] == 4
  for name in ("mlm_accuracy", "nsp_accuracy", "nsp_accuracy_per_example"):
    assert 0.0 <= final[f"eval_{name}"] <= 1.0
  assert final["eval_mlm_loss"] > 0 and final["eval_nsp_loss"] > 0
  # Both means are weighted by the masked counts, so the total's mean is their sum.
  assert final["eval_loss"] == pytest.approx(
    final["eval_mlm_loss"] + final["eval_nsp_loss"], abs=1e-5
  )
  (last_eval,) = [r for r in metrics.read_metrics(str(workdir)) if r["split"] == "eval"]
  assert {k: last_eval[k] for k in ("mlm_loss", "nsp_loss")} == pytest.approx(
    {k: final[f"eval_{k}"] for k in ("mlm_loss", "nsp_loss")}
  )

  fill_mask = (workdir / "fill_mask.txt").read_text()
  for text in pretrained.config.sample.fill_mask:
    assert repr(text) in fill_mask

  assert (workdir / "sentencepiece.model").is_file()
  tokenizer = load_bert_tokenizer(workdir)
  cached = sorted(pathlib.Path(pretrained.config.data.cache_dir).rglob("tokenizers/*.model"))
  assert len(cached) == 1  # the one the corpus was tokenized with
  assert tokenizer.sha256 == load_bert_tokenizer(cached[0]).sha256
  assert tokenizer.vocab_size == pretrained.config.model.vocab_size
  assert tokenizer.encode("[MASK]", allow_special=True) == [tokenizer.mask_id]

  assert (workdir / "loss.png").read_bytes()[:8] == PNG_SIGNATURE


def test_pretraining_loss_is_the_masked_mlm_mean_plus_the_masked_weighted_nsp_mean(pretrained):
  task = registry.make_task(pretrained.config)
  data = task.prepare_data(str(pretrained.workdir), 0, 1)
  batch = {k: np.array(v) for k, v in data.eval_batches[0].items()}
  model = task.model()
  params = pretrained_params(pretrained)
  inputs = (batch["tokens"], batch["segment_ids"], batch["attention_mask"])
  forward = jax.jit(lambda p, *x: model.apply({"params": p}, *x))
  token_logits, nsp_logits = jax.device_get(forward(params, *inputs))  # [b, t, V], [b, 2]
  rows = np.arange(len(batch["tokens"]))[:, None]
  mlm_logits = token_logits[rows, batch["masked_positions"]]  # [b, P, V]

  # Labels with known hits: every row's first prediction is the model's own guess, but row 0's
  # is weighted 0 (with the padding predictions) and must not count; NSP right on half the rows.
  masked_ids, weights = batch["masked_ids"], batch["masked_weights"]
  masked_ids[:, 0] = mlm_logits[:, 0].argmax(-1)
  weights[0, 0] = 0.0
  assert (weights == 0).sum() > 1 and weights.sum() > 0
  guess = nsp_logits.argmax(-1)
  batch["next_sentence_label"] = np.where(np.arange(len(guess)) < 2, guess, 1 - guess)

  mlm_nll = negative_log_likelihood(mlm_logits, masked_ids)  # [b, P]
  nsp_nll = negative_log_likelihood(nsp_logits, batch["next_sentence_label"])  # [b]
  per_example = weights.sum(-1)  # NSP counts once per masked token of the example
  nsp_right = (np.arange(len(guess)) < 2).astype(np.float64)
  expected = {
    "mlm_loss": (mlm_nll * weights).sum() / weights.sum(),
    "nsp_loss": (nsp_nll * per_example).sum() / per_example.sum(),
    "mlm_accuracy": ((mlm_logits.argmax(-1) == masked_ids) * weights).sum() / weights.sum(),
    "nsp_accuracy": (nsp_right * per_example).sum() / per_example.sum(),
    "num_tokens": weights.sum(),
  }
  assert len(set(per_example)) > 1, "rows should hold different masked counts"
  assert expected["mlm_accuracy"] > 0

  loss_fn = jax.jit(pretraining_loss_fn(model), static_argnums=3)
  loss, aux = jax.device_get(loss_fn(params, batch, None, True))
  assert loss == pytest.approx(expected["mlm_loss"] + expected["nsp_loss"], rel=1e-5)
  assert {k: float(aux[k]) for k in expected} == pytest.approx(expected, rel=1e-5)


def test_resumed_pretraining_gives_the_losses_of_an_uninterrupted_run(
  tmp_path, tfds_dir, pretrained, caplog
):
  assert pretrained.config.model.dropout_rate > 0  # the rng must be restored too
  workdir = tmp_path / "resumed"
  registry.train(
    pretraining_config(tfds_dir, **{"train.num_steps": 2, "train.checkpoint_every": 2}),
    str(workdir),
  )
  assert sorted(train_losses(workdir)) == [1, 2]
  with caplog.at_level(logging.WARNING):
    final = registry.train(
      pretraining_config(tfds_dir, **{"train.checkpoint_every": 2}), str(workdir)
    )
  assert "Resumed from step 2" in caplog.text  # not a fresh run that happens to match
  assert final["step"] == 4
  expected, resumed = train_losses(pretrained.workdir), train_losses(workdir)
  assert sorted(resumed) == sorted(expected) == [1, 2, 3, 4]
  np.testing.assert_allclose(
    [resumed[s] for s in range(1, 5)], [expected[s] for s in range(1, 5)], rtol=1e-6, atol=0
  )


def test_pretraining_sequences_longer_than_the_position_table_are_rejected(tmp_path, tfds_dir):
  config = pretraining_config(tfds_dir, **{"data.max_seq_len": 64})
  with pytest.raises(ValueError, match=r"data.max_seq_len=64 .*model.max_len=32\); lower data"):
    registry.train(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_bert_flops_per_token_counts_the_matmuls_and_the_decoded_share_of_the_tied_decoder():
  config = BertConfig(vocab_size=100, max_len=16, num_layers=2, num_heads=2, d_model=8, d_ff=16)
  tokens = jax.numpy.zeros((1, 16), jax.numpy.int32)
  params = jax.eval_shape(BertForPreTraining(config).init, KEY, tokens)["params"]
  # By hand: per layer q|k|v and out (4 d^2 + 4 d), the MLP (2 d ff + ff + d), two LayerNorms
  # (4 d); the embeddings' LayerNorm, pooler, MLM transform + norm + bias, NSP; no tables.
  d, ff, v = 8, 16, 100
  layer = 4 * d * d + 4 * d + 2 * d * ff + ff + d + 4 * d
  heads = 2 * d + (d * d + d) + (d * d + d + 2 * d + v) + (2 * d + 2)
  matmuls = 2 * layer + heads
  for decoded in (0.0, 0.25):
    expected = 6 * (matmuls + decoded * v * d) + 12 * 2 * 16 * d
    assert bert_flops_per_token(config, params, 16, decoded) == pytest.approx(expected)
