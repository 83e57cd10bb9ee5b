"""Tests for tfjax.models.transformer: the paper's encoder–decoder against a numpy reference,
packing, padding, and cached decoding."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.nn import numpy_reference as ref
from tfjax.models.config import count_params
from tfjax.models.transformer import Transformer, TransformerConfig
from tfjax.nn.stack import stack_layers

CONFIG = TransformerConfig(
  vocab_size=23,
  max_len=16,
  num_layers=2,
  num_heads=2,
  d_model=8,
  d_ff=16,
  dropout_rate=0.0,
)
SOURCE = np.array([[5, 6, 7, 3, 0, 0], [8, 9, 10, 11, 12, 3]])  # 0 = padding
TARGET_IN = np.array([[2, 13, 14, 15, 0], [2, 16, 17, 0, 0]])


def reference_params(config=CONFIG, seed=0):
  model = Transformer(config)
  return ref.random_params(model, SOURCE, TARGET_IN, seed=seed)["params"]


def test_logits_match_numpy_reference_of_the_paper():
  params = reference_params()
  logits = Transformer(CONFIG).apply({"params": params}, SOURCE, TARGET_IN)
  expected = ref.transformer_logits(
    ref.as_np(params), SOURCE, TARGET_IN, num_heads=2, eps=CONFIG.layer_norm_epsilon
  )
  chex.assert_shape(logits, (2, 5, 23))
  np.testing.assert_allclose(logits, expected, rtol=2e-4, atol=2e-4)


def test_one_matrix_embeds_source_and_target_and_projects_to_the_vocabulary():
  params = jax.eval_shape(Transformer(CONFIG).init, jax.random.key(0), SOURCE, TARGET_IN)["params"]
  embeddings = [
    "/".join(str(k.key) for k in path)
    for path, _ in jax.tree_util.tree_leaves_with_path(params)
    if "embed" in "/".join(str(k.key) for k in path)
  ]
  assert embeddings == ["token_embed/embedding"]


def test_more_padding_changes_no_logit():
  params = reference_params()
  model = Transformer(CONFIG)
  logits = model.apply({"params": params}, SOURCE, TARGET_IN)
  padded = model.apply(
    {"params": params}, np.pad(SOURCE, ((0, 0), (0, 3))), np.pad(TARGET_IN, ((0, 0), (0, 2)))
  )
  np.testing.assert_allclose(padded[:, :5], logits, atol=1e-5)


def test_packed_pairs_equal_the_pairs_alone():
  """Two pairs in one row, with segment ids and per-pair positions, give each pair's own logits."""
  params = reference_params()
  model = Transformer(CONFIG)
  alone = model.apply({"params": params}, SOURCE, TARGET_IN)
  source_lengths, target_lengths = (4, 6), (4, 3)
  row = lambda arrays, lengths: np.concatenate(
    [a[:n] for a, n in zip(arrays, lengths, strict=True)] + [[0]]
  )
  segments = lambda lengths: np.concatenate(
    [np.full(n, i + 1) for i, n in enumerate(lengths)] + [[0]]
  )
  positions = lambda lengths: np.concatenate([np.arange(n) for n in lengths] + [[0]])
  packed = model.apply(
    {"params": params},
    row(SOURCE, source_lengths)[None],
    row(TARGET_IN, target_lengths)[None],
    inputs_segmentation=segments(source_lengths)[None],
    inputs_positions=positions(source_lengths)[None],
    decoder_segmentation=segments(target_lengths)[None],
    decoder_positions=positions(target_lengths)[None],
  )[0]
  np.testing.assert_allclose(packed[:4], alone[0, :4], atol=1e-5)
  np.testing.assert_allclose(packed[4:7], alone[1, :3], atol=1e-5)


@pytest.mark.parametrize("scan_layers", [False, True], ids=["loop", "scan"])
def test_cached_decoding_matches_full_forward(scan_layers):
  config = CONFIG.replace(scan_layers=scan_layers)
  params = reference_params()
  if scan_layers:
    params = stack_layers(params, config.num_layers)
  full = Transformer(config).apply({"params": params}, SOURCE, TARGET_IN)
  model = Transformer(config.replace(decode=True))
  cache = model.init(jax.random.key(0), SOURCE, TARGET_IN)["cache"]
  if scan_layers:  # one cache for the decoder's stacked layers
    chex.assert_shape(
      cache["decoder"]["layers"]["self_attention"]["cached_key"], (2, 2, TARGET_IN.shape[1], 2, 4)
    )
  encoded = model.apply({"params": params}, SOURCE, method="encode")
  steps = []
  for t in range(TARGET_IN.shape[1]):
    logits, mutated = model.apply(
      {"params": params, "cache": cache},
      encoded,
      SOURCE,
      TARGET_IN[:, t : t + 1],
      decoder_positions=np.full((2, 1), t),
      method="decode",
      mutable=["cache"],
    )
    cache = mutated["cache"]
    steps.append(logits)
  np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)


def test_learned_positions_and_remat_train():
  config = CONFIG.replace(positions="learned", remat_policy="full", dropout_rate=0.1)
  model = Transformer(config)
  params = model.init(jax.random.key(0), SOURCE, TARGET_IN)["params"]
  assert params["encoder"]["position_embed"]["embedding"].shape == (16, 8)
  loss = lambda p: model.apply(
    {"params": p}, SOURCE, TARGET_IN, deterministic=False, rngs={"dropout": jax.random.key(1)}
  ).mean()
  grads = jax.jit(jax.grad(loss))(params)
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  assert np.abs(grads["decoder"]["position_embed"]["embedding"]).sum() > 0


def test_count_params_base_by_hand():
  """2 layers of each: E (V d), encoder layer 4(d^2 + d) + 2 d d_ff + d_ff + d + 2 * 2d (norms),
  decoder layer adds cross-attention 4(d^2 + d) and its norm 2d."""
  v, d, f = 23, 8, 16
  attention, ffn, norm = 4 * (d * d + d), 2 * d * f + f + d, 2 * d
  expected = v * d + 2 * (attention + ffn + 2 * norm) + 2 * (2 * attention + ffn + 3 * norm)
  assert count_params(Transformer(CONFIG), (1, 1), (1, 1)) == expected


@pytest.mark.parametrize(
  "changes, message",
  [
    (dict(d_model=10, num_heads=4), "not divisible"),
    (dict(positions="rotary"), "positions"),
    (dict(d_k=0), "d_k"),
    (dict(dropout_rate=1.0), "dropout_rate"),
  ],
)
def test_bad_config_is_a_clear_error(changes, message):
  with pytest.raises(ValueError, match=message):
    CONFIG.replace(**changes)


def test_too_long_input_is_a_clear_error():
  with pytest.raises(ValueError, match="max_len"):
    Transformer(CONFIG).init(jax.random.key(0), jnp.ones((1, 17), jnp.int32), TARGET_IN)
