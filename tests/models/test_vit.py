"""Tests for tfjax.models.vit: published sizes, a numpy forward reference (patches, [CLS],
positions, pooling, head), the scanned stack, attention weights, position-table resampling
against scipy, and the one-line errors for images the model cannot take."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from tests.nn import numpy_reference as ref
from tfjax.models.config import count_params
from tfjax.models.vit import (
  PARAM_AXES,
  ViT,
  ViTConfig,
  ViTModel,
  attention_weights,
  check_images,
  resample_params,
  resample_posemb,
)
from tfjax.nn.partitioning import params_logical_axes
from tfjax.nn.stack import stack_layers

TINY = ViTConfig(
  image_size=8,
  patch_size=4,
  num_channels=3,
  num_classes=5,
  num_layers=2,
  num_heads=2,
  d_model=8,
  d_ff=16,
)


def _images(config=TINY, batch=2, seed=0):
  rng = np.random.default_rng(seed)
  shape = (batch, config.image_size, config.image_size, config.num_channels)
  return jnp.asarray(rng.normal(size=shape), jnp.float32)


def _images_spec(config, batch=1):
  shape = (batch, config.image_size, config.image_size, config.num_channels)
  return jax.ShapeDtypeStruct(shape, jnp.float32)


# --- published parameter counts (HF ViTForImageClassification = the original vit_jax) --------

B16 = ViTConfig()  # 224 x 224, patch 16, 1000 classes


@pytest.mark.parametrize(
  "config, module, expected",
  [
    (B16.replace(d_model=192, num_heads=3, d_ff=768), ViT, 5_717_416),  # Ti/16
    (B16.replace(d_model=384, num_heads=6, d_ff=1536), ViT, 22_050_664),  # S/16
    (B16, ViT, 86_567_656),  # B/16
    (B16.replace(d_model=1024, num_heads=16, d_ff=4096, num_layers=24), ViT, 304_326_632),
    (B16.replace(pre_logits=True), ViTModel, 86_389_248),  # HF ViTModel with its pooler
    (B16, ViTModel, 85_798_656),  # the encoder without any head
  ],
  ids=["Ti16", "S16", "B16", "L16", "B16_model_with_pooler", "B16_encoder"],
)
def test_count_params_matches_published_sizes(config, module, expected):
  assert count_params(module(config), _images_spec(config)) == expected


# --- the forward pass ---------------------------------------------------------------------


@pytest.mark.parametrize("pooling, pre_logits", [("cls", False), ("gap", False), ("cls", True)])
def test_forward_matches_naive_numpy(pooling, pre_logits):
  config = TINY.replace(pooling=pooling, pre_logits=pre_logits)
  images = _images(config)
  model = ViT(config)
  params = ref.random_params(model, images)
  logits = model.apply(params, images)
  chex.assert_shape(logits, (2, config.num_classes))
  out = ViTModel(config).apply(
    {"params": params["params"]["vit"]}, images, return_hidden_states=True
  )
  tokens = config.num_tokens
  assert tokens == (5 if pooling == "cls" else 4)  # a 2 x 2 patch grid (+ [CLS])
  chex.assert_shape(out.last_hidden_state, (2, tokens, config.d_model))

  p = ref.as_np(params["params"])
  states, last, pooled = ref.vit_encoder(
    p["vit"],
    images,
    patch_size=config.patch_size,
    num_heads=config.num_heads,
    activation=config.activation,
    eps=config.layer_norm_epsilon,
    pooling=pooling,
  )
  chex.assert_trees_all_close(out.hidden_states, tuple(states), rtol=1e-4, atol=1e-4)
  chex.assert_trees_all_close(out.last_hidden_state, last, rtol=1e-4, atol=1e-4)
  chex.assert_trees_all_close(out.pooled, pooled, rtol=1e-4, atol=1e-4)
  chex.assert_trees_all_close(logits, ref.dense(pooled, p["classifier"]), rtol=1e-4, atol=1e-4)


def test_gap_has_no_cls_token_and_a_position_per_patch():
  params = ViT(TINY.replace(pooling="gap")).init(jax.random.key(0), _images())["params"]["vit"]
  assert "cls_token" not in params
  assert params["position_embed"]["embedding"].shape == (4, TINY.d_model)


def test_init_follows_the_paper_cls_zero_head_zero_positions_random():
  params = ViT(TINY).init(jax.random.key(0), _images())["params"]
  chex.assert_trees_all_equal(params["vit"]["cls_token"], jnp.zeros(TINY.d_model))
  chex.assert_trees_all_equal(params["classifier"]["kernel"], jnp.zeros((8, 5)))
  assert float(jnp.std(params["vit"]["position_embed"]["embedding"])) > 0.005


def test_scanned_layers_compute_the_same_as_unrolled():
  images = _images()
  params = ref.random_params(ViT(TINY), images)["params"]
  unrolled = ViT(TINY).apply({"params": params}, images)
  stacked = stack_layers(params, TINY.num_layers)
  for policy in ("none", "full"):
    scanned = ViT(TINY.replace(scan_layers=True, remat_policy=policy))
    chex.assert_trees_all_close(
      scanned.apply({"params": stacked}, images), unrolled, rtol=1e-5, atol=1e-6
    )


def test_gradients_reach_every_parameter():
  images = _images()
  model = ViT(TINY)
  params = ref.random_params(model, images)["params"]
  loss = lambda p: jnp.sum(model.apply({"params": p}, images) ** 2)
  grads = jax.grad(loss)(params)
  assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads))


def test_attention_weights_are_one_softmax_per_layer_over_all_tokens():
  images = _images()
  model = ViT(TINY)
  params = ref.random_params(model, images)
  _, state = model.apply(params, images, mutable=["intermediates"])
  weights = attention_weights(state)
  assert len(weights) == TINY.num_layers
  for w in weights:
    chex.assert_shape(w, (2, TINY.num_heads, 5, 5))
    chex.assert_trees_all_close(w.sum(-1), jnp.ones((2, TINY.num_heads, 5)), atol=1e-5)


def test_every_parameter_has_logical_axes():
  for config in (TINY, TINY.replace(pre_logits=True, scan_layers=True)):
    shapes = jax.eval_shape(ViT(config).init, jax.random.key(0), _images_spec(config))
    axes = params_logical_axes(shapes["params"], PARAM_AXES)
    assert axes["vit"]["patch_embed"]["kernel"] == ("patch", "patch", "channels", "embed")


# --- a new resolution ---------------------------------------------------------------------


@pytest.mark.parametrize(
  "old, new", [((2, 2), (3, 3)), ((4, 4), (7, 7)), ((7, 7), (4, 4)), ((3, 5), (6, 2))]
)
def test_resample_posemb_is_scipy_zoom_order_1_with_the_cls_row_kept(old, new):
  rng = np.random.default_rng(0)
  d = 6
  table = rng.normal(size=(1 + old[0] * old[1], d)).astype(np.float32)
  resampled = resample_posemb(table, old, new)
  grid = table[1:].reshape(*old, d)
  zoom = (new[0] / old[0], new[1] / old[1], 1)
  expected = scipy.ndimage.zoom(grid, zoom, order=1).reshape(-1, d)
  np.testing.assert_allclose(resampled[0], table[0])
  np.testing.assert_allclose(resampled[1:], expected, rtol=1e-5, atol=1e-6)


def test_resample_posemb_to_the_same_grid_is_the_identity_and_gap_has_no_prefix():
  table = np.random.default_rng(1).normal(size=(9, 4)).astype(np.float32)
  np.testing.assert_array_equal(resample_posemb(table, (3, 3), (3, 3), 0), table)
  with pytest.raises(ValueError, match=r"is not 1 \+ 3x3 rows"):
    resample_posemb(table, (3, 3), (4, 4))


def test_resampled_params_run_at_the_new_resolution():
  big = TINY.replace(image_size=12)  # a 3 x 3 grid instead of 2 x 2
  params = ref.random_params(ViT(TINY), _images())["params"]
  moved = resample_params(params, TINY, big)
  assert moved["vit"]["position_embed"]["embedding"].shape == (10, TINY.d_model)
  chex.assert_trees_all_equal(moved["classifier"], params["classifier"])
  logits = ViT(big).apply({"params": moved}, _images(big))
  assert bool(jnp.all(jnp.isfinite(logits)))


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "shape, message",
  [
    ((2, 9, 8, 3), r"images of 9x8 pixels do not split into 4x4 patches; resize or crop"),
    ((2, 8, 8, 1), r"images have 1 channels but the model takes model.num_channels=3"),
    (
      (2, 12, 12, 3),
      r"give a 3x3 patch grid, but the model's position embeddings are for 8x8 "
      r"\(2x2\); .*resample_params",
    ),
    ((8, 8, 3), r"give a batch \[b, height, width, channels\]"),
  ],
)
def test_images_the_model_cannot_take_are_one_line_errors(shape, message):
  with pytest.raises(ValueError, match=message):
    check_images(TINY, np.zeros(shape, np.float32))
  with pytest.raises(ValueError, match=message):
    jax.eval_shape(ViT(TINY).init, jax.random.key(0), jax.ShapeDtypeStruct(shape, jnp.float32))


@pytest.mark.parametrize(
  "changes, message",
  [
    ({"image_size": 30, "patch_size": 4}, r"image_size=30 is not divisible by model.patch_size=4"),
    ({"pooling": "mean"}, r"pooling='mean' is unknown"),
    ({"num_classes": -1}, r"num_classes=-1 must be >= 0"),
    ({"d_model": 10, "num_heads": 4}, r"d_model=10 is not divisible by num_heads=4"),
    ({"dtype": "float3"}, r"model.dtype='float3' is not a dtype"),
  ],
)
def test_bad_configs_are_one_line_errors(changes, message):
  with pytest.raises(ValueError, match=message):
    TINY.replace(**changes)
