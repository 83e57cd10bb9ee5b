"""Tests for tfjax.inference.attention_views: rollout against a naive per-element product, the
[CLS] maps on a hand-built tensor, the upsampling, and both on a real tiny ViT's weights."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tfjax.inference import attention_views as views
from tfjax.models.vit import ViT, ViTConfig, abstract_params, attention_weights


def _row_stochastic(rng, shape):
  w = rng.random(shape) ** 3  # peaked rows, so the products of layers are far from uniform
  return w / w.sum(-1, keepdims=True)


def _naive_rollout(weights, residual):
  """Abnar & Zuidema 2020, §3, one element at a time: [layers][b][heads][t][t] -> [b][t][t]."""
  layers, batch, heads, t, _ = weights.shape
  out = np.zeros((batch, t, t))
  for b in range(batch):
    rollout = None
    for layer in range(layers):
      a = [[sum(weights[layer, b, h, i, j] for h in range(heads)) / heads for j in range(t)]
           for i in range(t)]  # fmt: skip
      if residual:
        a = [[0.5 * a[i][j] + 0.5 * (i == j) for j in range(t)] for i in range(t)]
      a = [[a[i][j] / sum(a[i]) for j in range(t)] for i in range(t)]
      if rollout is None:
        rollout = a
      else:  # this layer after the ones below it: A_l (A_{l-1} ... A_1)
        rollout = [[sum(a[i][k] * rollout[k][j] for k in range(t)) for j in range(t)]
                   for i in range(t)]  # fmt: skip
    out[b] = rollout
  return out


@pytest.mark.parametrize("residual", [True, False])
def test_rollout_is_the_naive_product_of_the_layers_head_means_from_first_to_last(residual):
  weights = _row_stochastic(np.random.default_rng(0), (3, 2, 4, 5, 5))  # [layers, b, heads, t, t]
  rollout = views.attention_rollout(weights, residual=residual)
  chex.assert_shape(rollout, (2, 5, 5))
  np.testing.assert_allclose(rollout, _naive_rollout(weights, residual), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(rollout).sum(-1), 1.0, rtol=1e-5)
  # the order matters: the layers multiplied last to first give another matrix
  reversed_order = _naive_rollout(weights[::-1], residual)
  assert not np.allclose(rollout, reversed_order, atol=1e-3)
  # a list of layers (what attention_weights returns) is the same as them stacked
  np.testing.assert_allclose(views.attention_rollout(list(weights), residual), rollout, rtol=1e-6)


def test_rollout_of_identity_attention_is_the_identity():
  eye = np.broadcast_to(np.eye(4), (2, 1, 3, 4, 4))  # every token attends to itself
  np.testing.assert_allclose(views.attention_rollout(eye), np.broadcast_to(np.eye(4), (1, 4, 4)))


def _hand_built(layers=2, heads=2, grid=(2, 3)):
  """Weights [layers, 1, heads, 1 + h*w, 1 + h*w] whose [CLS] row at (layer, head) is
  100 * layer + 10 * head + token, and every other row -1 (a map must not read them)."""
  t = 1 + grid[0] * grid[1]
  weights = np.full((layers, 1, heads, t, t), -1.0)
  for layer in range(layers):
    for head in range(heads):
      weights[layer, 0, head, 0] = 100 * layer + 10 * head + np.arange(t)
  return weights


def test_cls_maps_are_the_cls_row_over_the_patches_in_row_major_order():
  maps = views.cls_attention(_hand_built(), grid=(2, 3))
  chex.assert_shape(maps, (2, 1, 2, 2, 3))  # [layers, b, heads, h, w]
  patches = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # token 0 ([CLS] -> [CLS]) left out
  for layer in range(2):
    for head in range(2):
      np.testing.assert_array_equal(maps[layer, 0, head], 100 * layer + 10 * head + patches)


def test_without_cls_a_map_is_the_mean_of_all_rows():
  t, grid = 6, (2, 3)  # a gap model: 6 patch tokens, no prefix
  weights = np.fromfunction(lambda i, j: 10.0 * i + j, (t, t))[None, None, None]  # [1, 1, 1, t, t]
  expected = np.array([[25.0, 26.0, 27.0], [28.0, 29.0, 30.0]])  # mean_i (10 i + j) = 25 + j
  np.testing.assert_allclose(views.cls_attention(weights, grid, 0)[0, 0, 0], expected)
  np.testing.assert_allclose(views.rollout_map(weights[0, 0], grid, 0)[0], expected)


def test_rollout_map_is_the_cls_row_of_the_rollout_over_the_patches():
  rollout = _hand_built(layers=1, heads=1)[0, :, 0]  # [b=1, 7, 7]
  chex.assert_shape(views.rollout_map(rollout, (2, 3)), (1, 2, 3))
  np.testing.assert_array_equal(views.rollout_map(rollout, (2, 3))[0], [[1, 2, 3], [4, 5, 6]])


def test_a_grid_that_does_not_match_the_tokens_is_a_clear_error():
  with pytest.raises(ValueError, match="patch grid"):
    views.cls_attention(_hand_built(), grid=(3, 3))
  with pytest.raises(ValueError, match="patch grid"):
    views.rollout_map(np.zeros((1, 7, 7)), grid=(2, 3), num_prefix_tokens=0)
  with pytest.raises(ValueError, match="tokens, tokens"):
    views.attention_rollout(np.zeros((2, 3, 4, 4)))  # one layer without its layer axis


def test_upsampling_gives_each_patch_s_value_to_its_pixels():
  maps = np.arange(2 * 6, dtype=np.float32).reshape(2, 2, 3)  # [b, h, w]
  up = views.upsample(maps, (8, 12))  # 4 x 4 pixel patches
  chex.assert_shape(up, (2, 8, 12))
  np.testing.assert_array_equal(up, np.kron(maps, np.ones((1, 4, 4))))
  smooth = views.upsample(np.full((3, 3), 0.25), 12, method="linear")
  np.testing.assert_allclose(smooth, np.full((12, 12), 0.25), rtol=1e-6)


TINY = ViTConfig(
  image_size=8, patch_size=4, num_channels=3, num_classes=3, num_layers=2, num_heads=2,
  d_model=16, d_ff=32,
)  # fmt: skip


def test_maps_of_a_tiny_vit_are_its_weights_rows_and_rollout_rows_sum_to_one():
  config = TINY  # pooling "cls" (the maps of "gap", the mean rows: the hand-built test above)
  model = ViT(config)
  rng = np.random.default_rng(0)
  normal = lambda leaf: rng.normal(0.0, 0.5, leaf.shape).astype(np.float32)
  params = jax.tree.map(normal, abstract_params(model))  # no init to compile: a fast test
  images = rng.normal(size=(3, 8, 8, 3)).astype(np.float32)
  _, state = model.apply({"params": params}, images, mutable=["intermediates"])
  weights = np.stack(attention_weights(state))  # [layers, b, heads, tokens, tokens]
  chex.assert_shape(weights, (2, 3, 2, config.num_tokens, config.num_tokens))

  cls_maps, rollout_map = views.views(state, config)
  chex.assert_shape(cls_maps, (2, 3, 2, 2, 2))  # [layers, b, heads, h, w]
  chex.assert_shape(rollout_map, (3, 2, 2))  # [b, h, w]
  rows = weights[..., 0, 1:]  # [layers, b, heads, 4]: [CLS] over the patches
  np.testing.assert_allclose(cls_maps, rows.reshape(2, 3, 2, 2, 2), rtol=1e-6)

  rollout = views.attention_rollout(attention_weights(state))  # [b, tokens, tokens]
  np.testing.assert_allclose(jnp.sum(rollout, -1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(rollout, _naive_rollout(weights, True), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(rollout_map, np.reshape(rollout[:, 0, 1:], (3, 2, 2)), rtol=1e-6)
  assert np.ptp(np.asarray(rollout_map)) > 1e-4  # the maps vary over the patches
