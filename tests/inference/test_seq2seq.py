"""tfjax.inference.seq2seq end to end: a tiny Transformer trained to reverse sequences is decoded
perfectly by greedy and beam search; batching, limits and bad input."""

import functools

import jax
import numpy as np
import optax
import pytest

from tfjax.inference import seq2seq
from tfjax.models.transformer import Transformer, TransformerConfig
from tfjax.tasks.translation import label_smoothed_loss

PAD, BOS, EOS = 0, 2, 3
SYMBOLS = np.arange(4, 14)  # 10 content tokens
CONFIG = TransformerConfig(
  vocab_size=14, max_len=12, num_layers=2, num_heads=4, d_model=64, d_ff=128, dropout_rate=0.0
)


def reverse_batch(rng: np.random.Generator, batch_size: int, max_tokens: int = 8):
  """Sources of 1..max_tokens symbols + EOS, targets their reversal (teacher-forced rows)."""
  inputs = np.zeros((batch_size, max_tokens + 1), np.int32)
  decoder_inputs = np.zeros_like(inputs)
  targets = np.zeros_like(inputs)
  for row in range(batch_size):
    tokens = rng.choice(SYMBOLS, size=rng.integers(1, max_tokens + 1))
    n = len(tokens)
    inputs[row, : n + 1] = [*tokens, EOS]
    decoder_inputs[row, : n + 1] = [BOS, *tokens[::-1]]
    targets[row, : n + 1] = [*tokens[::-1], EOS]
  return inputs, decoder_inputs, targets


@pytest.fixture(scope="module")
def reverser():
  """Parameters of a Transformer trained (Adam, a few hundred steps) to reverse sequences."""
  model = Transformer(CONFIG)
  rng = np.random.default_rng(0)
  params = model.init(jax.random.key(0), *reverse_batch(rng, 2)[:2])["params"]
  tx = optax.adam(optax.warmup_cosine_decay_schedule(0.0, 3e-3, 50, 600))
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, inputs, decoder_inputs, targets):
    def loss(params):
      logits = model.apply({"params": params}, inputs, decoder_inputs)
      return label_smoothed_loss(logits, targets, targets != PAD, 0.0)[0]

    grads = jax.grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state

  for _ in range(600):
    params, opt_state = step(params, opt_state, *reverse_batch(rng, 64))
  return params


def test_greedy_and_beam_search_reverse_every_sequence(reverser):
  rng = np.random.default_rng(1)
  sources = [list(rng.choice(SYMBOLS, size=n)) for n in rng.integers(1, 9, size=40)]
  decode = functools.partial(
    seq2seq.translate_ids, CONFIG, reverser, sources, bos_id=BOS, eos_id=EOS, batch_size=16
  )
  expected = [s[::-1] for s in sources]
  assert decode(beam_size=0) == expected
  assert decode(beam_size=4) == expected


def test_output_limit_is_source_length_plus_one_plus_extra_len(reverser, caplog):
  """len(source) + 1 + extra_len output tokens, EOS included: with extra_len 0 the reversal and
  its EOS just fit; a limit one shorter would cut the EOS off (and count the output)."""
  sources = [[4, 5, 6]]
  for beam_size in (0, 4):
    out = seq2seq.translate_ids(
      CONFIG, reverser, sources, bos_id=BOS, eos_id=EOS, beam_size=beam_size, extra_len=0
    )
    assert out == [[6, 5, 4]]
  assert "reached their length limit" not in caplog.text


def test_bad_sources_are_clear_errors(reverser):
  common = dict(bos_id=BOS, eos_id=EOS)
  with pytest.raises(ValueError, match="source 1 is empty"):
    seq2seq.translate_ids(CONFIG, reverser, [[4], []], **common)
  with pytest.raises(ValueError, match="more than model.max_len - 1 = 11"):
    seq2seq.translate_ids(CONFIG, reverser, [[4] * 12], **common)


class CharTokenizer:
  """One token per letter a..j (ids 4..13): enough to drive translate_texts."""

  bos_id, eos_id = BOS, EOS

  def encode_batch(self, texts):
    return [[ord(c) - ord("a") + 4 for c in t if c != " "] for t in texts]

  def decode(self, ids):
    return "".join(chr(i - 4 + ord("a")) for i in ids)


def test_translate_texts_truncates_with_a_count_or_refuses(reverser, caplog, monkeypatch):
  tokenizer = CharTokenizer()
  assert seq2seq.translate_texts(CONFIG, reverser, tokenizer, ["abc"], beam_size=0) == ["cba"]
  long = "abcdefghijabc"  # 13 tokens, the model takes 11
  with pytest.raises(ValueError, match=r"sentences \[2\] are longer than the model's 11"):
    seq2seq.translate_texts(CONFIG, reverser, tokenizer, ["ab", long], truncate=False)
  decoded = []
  monkeypatch.setattr(
    seq2seq,
    "translate_ids",
    lambda config, params, sources, **kw: decoded.extend(sources) or [[4]] * len(sources),
  )
  assert seq2seq.translate_texts(CONFIG, reverser, tokenizer, [long]) == ["a"]
  assert decoded == [tokenizer.encode_batch([long])[0][:11]]
  assert "Truncated 1 sentences to 11 tokens" in caplog.text
  with pytest.raises(ValueError, match="sentence 2 is empty"):
    seq2seq.translate_texts(CONFIG, reverser, tokenizer, ["ab", "  "])
