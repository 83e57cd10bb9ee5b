"""Tests for tfjax.nn.embedding: the sinusoidal table of §3.5 and the embedding modules."""

import math

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from tests.nn import numpy_reference as ref
from tfjax.nn.embedding import LearnedPositionEmbedding, TokenEmbedding, sinusoidal_positions


def _paper_table(length, d_model):
  """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)), by loops."""
  table = np.zeros((length, d_model))
  for pos in range(length):
    for j in range(d_model):
      i = j // 2
      angle = pos / 10000 ** (2 * i / d_model)
      table[pos, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
  return table


def _lecture_table(length, d_model):
  """The lecture's bug: `i` already steps by 2, and the exponent doubles it again."""
  table = np.zeros((length, d_model))
  for pos in range(length):
    for i in range(0, d_model, 2):
      table[pos, i] = math.sin(pos / 10000 ** ((2 * i) / d_model))
      if i + 1 < d_model:
        table[pos, i + 1] = math.cos(pos / 10000 ** ((2 * i) / d_model))
  return table


@pytest.mark.parametrize("d_model", [8, 7])  # even and odd
def test_sinusoidal_positions_match_the_paper_formula(d_model):
  table = sinusoidal_positions(50, d_model)
  assert table.shape == (50, d_model)
  assert table.dtype == np.float32
  np.testing.assert_allclose(table, _paper_table(50, d_model), rtol=0, atol=1e-6)


def test_sinusoidal_positions_do_not_use_the_lectures_doubled_exponent():
  table = sinusoidal_positions(50, 8)
  lecture = _lecture_table(50, 8)
  # Columns 0 and 1 (i = 0) agree by construction; from column 2 on the frequencies differ.
  np.testing.assert_allclose(table[:, :2], lecture[:, :2], atol=1e-6)
  assert np.abs(table[:, 2:] - lecture[:, 2:]).max() > 0.5
  # The paper's wavelengths form a geometric progression up to 10000 * 2 pi: the last sine
  # column of d=8 has frequency 10000^(-6/8), the lecture's 10000^(-12/8).
  pos = np.arange(50)
  np.testing.assert_allclose(table[:, 6], np.sin(pos * 10000.0 ** (-6 / 8)), atol=1e-6)


def test_token_embedding_looks_up_rows():
  module = TokenEmbedding(num_embeddings=11, features=4)
  tokens = jnp.array([[0, 3, 10], [3, 3, 1]])
  params = ref.random_params(module, tokens)
  table = np.asarray(params["params"]["embedding"])
  chex.assert_shape(table, (11, 4))
  np.testing.assert_array_equal(module.apply(params, tokens), table[np.asarray(tokens)])


def test_token_embedding_attend_is_the_transposed_table():
  module = TokenEmbedding(num_embeddings=11, features=4)
  params = ref.random_params(module, jnp.zeros((1, 1), jnp.int32))
  x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
  logits = module.apply(params, x, method=TokenEmbedding.attend)
  chex.assert_shape(logits, (2, 3, 11))
  expected = x.astype(np.float64) @ np.asarray(params["params"]["embedding"], np.float64).T
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)


def test_learned_position_embedding_looks_up_rows_at_positions():
  module = LearnedPositionEmbedding(max_len=6, features=4)
  positions = jnp.array([[0, 1, 2], [5, 2, 2]])
  params = ref.random_params(module, positions)
  table = np.asarray(params["params"]["embedding"])
  chex.assert_shape(table, (6, 4))
  np.testing.assert_array_equal(module.apply(params, positions), table[np.asarray(positions)])
