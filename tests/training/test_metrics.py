"""MetricWriter (JSONL + TensorBoard), the progress bar, the FLOPs count and the MFU."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tfjax.models.gpt import GPT, GPTConfig
from tfjax.tasks.lm import lm_loss_fn
from tfjax.training import metrics


def _scalars(workdir, split, tag):
  acc = EventAccumulator(os.path.join(workdir, "tensorboard", split))
  acc.Reload()
  return [(e.step, e.value) for e in acc.Scalars(tag)]


def _write_run(workdir, steps, offset=0.0):
  with metrics.MetricWriter(workdir, enabled=True) as writer:
    for s in steps:
      writer.write(s, {"loss": jnp.float32(10.0 / s + offset), "tokens": s * 64}, split="train")
      if s % 20 == 0:
        writer.write(s, {"loss": np.float64(5.0 / s + offset)}, split="eval")


def test_jsonl_round_trip(tmp_path):
  workdir = str(tmp_path / "run")
  _write_run(workdir, [10, 20, 30])
  records = metrics.read_metrics(workdir)
  expected = [
    {"step": 10, "split": "train", "loss": float(np.float32(1.0)), "tokens": 640},
    {"step": 20, "split": "train", "loss": float(np.float32(0.5)), "tokens": 1280},
    {"step": 20, "split": "eval", "loss": 0.25},
    {"step": 30, "split": "train", "loss": float(np.float32(10 / 30)), "tokens": 1920},
  ]
  assert records == expected
  assert isinstance(records[0]["tokens"], int)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    assert [json.loads(line) for line in f] == expected  # one JSON object per line


def test_tensorboard_events_read_back_with_same_scalars(tmp_path):
  workdir = str(tmp_path)
  _write_run(workdir, [10, 20, 30, 40])
  records = metrics.read_metrics(workdir)
  for split in ("train", "eval"):
    want = [(r["step"], r["loss"]) for r in records if r["split"] == split]
    got = _scalars(workdir, split, "loss")
    assert [s for s, _ in got] == [s for s, _ in want]
    np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-6)


def test_resume_appends_and_truncate_after_drops_lost_steps(tmp_path):
  workdir = str(tmp_path)
  _write_run(workdir, [10, 20, 30, 40, 50])
  # The run died after its checkpoint at step 30; it resumes there and logs again.
  writer = metrics.MetricWriter(workdir, enabled=True)
  writer.truncate_after(30)
  assert max(r["step"] for r in metrics.read_metrics(workdir)) == 30
  writer.write(40, {"loss": 7.0}, split="train")
  writer.close()

  records = metrics.read_metrics(workdir)
  assert [(r["step"], r["split"]) for r in records] == [
    (10, "train"),
    (20, "train"),
    (20, "eval"),
    (30, "train"),
    (40, "train"),
  ]
  assert records[-1]["loss"] == 7.0 and records[0]["loss"] == 1.0  # appended, not truncated
  assert _scalars(workdir, "train", "loss")[-2:] == [(30, pytest.approx(1 / 3)), (40, 7.0)]
  assert [s for s, _ in _scalars(workdir, "eval", "loss")] == [20]


def test_truncate_after_drops_a_torn_last_line(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1, "split": "train", "loss": 2.0}\n{"step": 2, "spl')
  assert metrics.read_metrics(str(tmp_path)) == [{"step": 1, "split": "train", "loss": 2.0}]
  metrics.MetricWriter(str(tmp_path), enabled=True).truncate_after(5)
  assert path.read_text() == '{"step": 1, "split": "train", "loss": 2.0}\n'


def test_disabled_writer_writes_nothing(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path / "run"), enabled=False)
  writer.write(1, {"loss": 1.0})
  writer.truncate_after(0)
  writer.close()
  assert not os.path.exists(tmp_path / "run")


def test_write_rejects_reserved_names_and_non_scalars(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path), enabled=True, tensorboard=False)
  with pytest.raises(ValueError, match="reserved"):
    writer.write(1, {"step": 3.0})
  with pytest.raises(ValueError, match="scalars"):
    writer.write(1, {"loss": np.ones(3)})
  writer.close()


def test_progress_bar_shows_loss_and_throughput(capsys):
  bar = metrics.ProgressBar(num_steps=100, initial_step=40, enabled=True)
  bar.update(50, loss=2.34567, tokens_per_s=12_345.0)
  bar.close()
  err = capsys.readouterr().err
  assert "50/100" in err and "loss=2.3457" in err and "tok/s=12.3k" in err

  quiet = metrics.ProgressBar(num_steps=100, enabled=False)
  quiet.update(10, loss=1.0)
  quiet.close()
  assert capsys.readouterr().err == ""


def test_flops_per_token_match_xla_s_count_of_a_gpt_training_step():
  """6 N + 12 L T d against XLA's own FLOP count of the forward and backward of a tiny GPT: the
  formula counts the matmuls only, so XLA's count is a little above it (layer norms, softmax,
  GELU, the loss: here 2-3%), never below."""
  config = GPTConfig(vocab_size=128, max_len=32, num_layers=2, num_heads=4, d_model=64, d_ff=256)
  model, batch_size, seq_len = GPT(config), 4, 32
  tokens = jax.ShapeDtypeStruct((batch_size, seq_len), jnp.int32)
  params = jax.eval_shape(model.init, jax.random.key(0), tokens)["params"]
  loss = lambda p, b: lm_loss_fn(model)(p, b, None, True)[0]
  step = jax.jit(jax.value_and_grad(loss)).lower(params, {"inputs": tokens, "targets": tokens})
  cost = step.compile().cost_analysis()
  xla_per_token = (cost[0] if isinstance(cost, list) else cost)["flops"] / (batch_size * seq_len)

  num_params = sum(x.size for x in jax.tree.leaves(params))
  positions = params["position_embed"]["embedding"].size  # a lookup: no FLOPs
  ours = metrics.transformer_flops_per_token(num_params - positions, 2, seq_len, 64)
  assert ours <= xla_per_token <= 1.05 * ours, (ours, xla_per_token)


def test_mfu_arithmetic():
  assert metrics.mfu(1000.0, 6e6, 1.2e10) == pytest.approx(0.5)
  with pytest.raises(ValueError, match="peak_flops"):
    metrics.mfu(1.0, 1.0, 0.0)


def test_measured_peak_is_one_matmul_s_flops_over_its_median_time(monkeypatch):
  """On a clock where each matmul takes 0.5 ms, the measured rate is XLA's FLOP count of the
  n x n x n matmul (2 n^3) / 0.5 ms, however many matmuls a timing needs to last 20 ms."""
  n, seconds_per_matmul = 64, 5e-4
  a = jnp.ones((n, n), jnp.float32)
  cost = jax.jit(jnp.matmul).lower(a, a).compile().cost_analysis()
  matmul_flops = (cost[0] if isinstance(cost, list) else cost)["flops"]
  assert matmul_flops == 2 * n**3
  clock = {"now": 0.0, "matmuls": 0}
  block_until_ready = jax.block_until_ready

  def timed_block(results):
    clock["now"] += seconds_per_matmul * len(results)
    clock["matmuls"] += len(results)
    return block_until_ready(results)

  monkeypatch.setattr(metrics.time, "perf_counter", lambda: clock["now"])
  monkeypatch.setattr(metrics.jax, "block_until_ready", timed_block)
  flops = metrics.measure_matmul_peak_flops(n=n, repeats=3)
  assert flops == pytest.approx(matmul_flops / seconds_per_matmul, rel=1e-9)
  # 64 matmuls (32 ms) per timing: the first count whose timing lasts 20 ms.
  assert clock["matmuls"] == sum(2**k for k in range(7)) + 3 * 64


def test_confusion_matrix_counts_as_a_naive_loop_and_skips_weight_zero_examples():
  rng = np.random.default_rng(0)
  labels, predictions = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
  weights = rng.integers(0, 3, 200).astype(np.float32)  # 0: padding; whole counts otherwise
  labels[weights == 0] = 99  # a padded example's label is never looked at
  expected = np.zeros((4, 4), np.int64)
  for true, predicted, weight in zip(labels, predictions, weights, strict=True):
    if weight:
      expected[true, predicted] += int(weight)
  matrix = metrics.confusion_matrix(labels, predictions, 4, weights)
  assert matrix.dtype == np.int64
  np.testing.assert_array_equal(matrix, expected)
  unweighted = metrics.confusion_matrix(labels[weights > 0], predictions[weights > 0], 4)
  assert unweighted.sum() == np.count_nonzero(weights) and np.all(unweighted <= matrix)
  with pytest.raises(ValueError, match="outside the classes"):
    metrics.confusion_matrix([0, 4], [0, 1], 4)
  with pytest.raises(ValueError, match="whole counts"):
    metrics.confusion_matrix([0, 1], [0, 1], 4, weights=[0.5, 1.0])
