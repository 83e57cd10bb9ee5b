"""Naive float64 numpy references for the building blocks, written from the papers' formulas.

Independent of tfjax: explicit loops over batch, head and query where the math is per row, and
LayerNorm as (x - mean) / sqrt(var + eps) * scale + bias with the biased variance (Ba et al.
2016), not the lecture's (unbiased std + eps). Parameters are the modules' own (flax Dense
kernels are [in, out]).
"""

import functools
import math

import jax
import numpy as np


def random_params(module, *args, seed=0, std=0.3, **kwargs):
  """Parameters for `module.init(key, *args, **kwargs)` drawn with numpy, float32.

  Kernels, embeddings and biases N(0, std^2), LayerNorm scales 1 + N(0, 0.2^2): every parameter
  is off its init value (so a dropped bias or gain shows), and attention is far from uniform.
  The shapes come from `jax.eval_shape`, so nothing is compiled or allocated by JAX.
  """
  shapes = jax.eval_shape(functools.partial(module.init, **kwargs), jax.random.key(0), *args)
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    x = rng.normal(size=leaf.shape)
    return (1.0 + 0.2 * x if path[-1].key == "scale" else std * x).astype(np.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def as_np(tree):
  """float64 numpy copy of a (nested dict) parameter tree."""
  if isinstance(tree, dict) or hasattr(tree, "items"):
    return {k: as_np(v) for k, v in tree.items()}
  return np.asarray(tree, dtype=np.float64)


def attention(q, k, v, mask=None):
  """softmax(Q K^T / sqrt(d_k)) V per (batch, head, query) row; fully masked rows give zeros.

  q: [b, q, h, d_k], k: [b, k, h, d_k], v: [b, k, h, d_v], mask broadcastable to [b, h, q, k].
  Returns (out [b, q, h, d_v], weights [b, h, q, k]).
  """
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  b, tq, h, d_k = q.shape
  tk = k.shape[1]
  mask = np.ones((b, h, tq, tk), bool) if mask is None else np.broadcast_to(mask, (b, h, tq, tk))
  out = np.zeros((b, tq, h, v.shape[-1]))
  weights = np.zeros((b, h, tq, tk))
  for bi in range(b):
    for hi in range(h):
      for i in range(tq):
        visible = np.asarray(mask[bi, hi, i], bool)
        if not visible.any():
          continue
        scores = np.array([q[bi, i, hi] @ k[bi, j, hi] for j in range(tk)]) / math.sqrt(d_k)
        e = np.where(visible, np.exp(scores - scores[visible].max()), 0.0)
        w = e / e.sum()
        weights[bi, hi, i] = w
        out[bi, i, hi] = w @ v[bi, :, hi]
  return out, weights


def dense(x, p):
  return x @ p["kernel"] + p["bias"]


def multi_head_attention(p, x_q, x_kv=None, mask=None, *, num_heads, d_k, d_v):
  """Project, split heads, attend per head, concatenate, project (Vaswani et al. §3.2.2)."""
  h = num_heads
  if x_kv is None:  # fused [q | k | v] projection
    qkv = dense(x_q, p["qkv"])
    q, k, v = qkv[..., : h * d_k], qkv[..., h * d_k : 2 * h * d_k], qkv[..., 2 * h * d_k :]
  else:
    q = dense(x_q, p["query"])
    kv = dense(x_kv, p["key_value"])
    k, v = kv[..., : h * d_k], kv[..., h * d_k :]
  if mask is not None:
    mask = np.asarray(mask)
    mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)  # [b | 1, h | 1, q, k]
  heads = []
  for hi in range(h):
    qh = q[..., hi * d_k : (hi + 1) * d_k][:, :, None]
    kh = k[..., hi * d_k : (hi + 1) * d_k][:, :, None]
    vh = v[..., hi * d_v : (hi + 1) * d_v][:, :, None]
    head_mask = None if mask is None else mask[:, hi : hi + 1] if mask.shape[1] > 1 else mask
    heads.append(attention(qh, kh, vh, head_mask)[0][:, :, 0])  # [b, q, d_v]
  return dense(np.concatenate(heads, axis=-1), p["out"])


def layer_norm(x, p, eps):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)  # biased: divide by d, not d - 1
  return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def relu(x):
  return np.maximum(x, 0.0)


def gelu(x):
  """Exact GELU, 0.5 x (1 + erf(x / sqrt 2)) (Hendrycks & Gimpel 2016)."""
  erf = np.vectorize(math.erf)
  return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
  """The tanh approximation, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
  return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


ACTIVATIONS = {"relu": relu, "gelu": gelu, "gelu_tanh": gelu_tanh}


def feed_forward(p, x, activation):
  return dense(ACTIVATIONS[activation](dense(x, p["hidden"])), p["output"])


def transformer_layer(
  p, x, mask=None, *, num_heads, activation, pre_norm, eps, encoded=None, cross_mask=None
):
  """Post-LN: x = LN(x + F(x)); pre-LN: x = x + F(LN(x)); for each sublayer F in turn."""
  d = x.shape[-1] // num_heads

  def residual(name, sublayer, x):
    if pre_norm:
      return x + sublayer(layer_norm(x, p[f"{name}_norm"], eps))
    return layer_norm(x + sublayer(x), p[f"{name}_norm"], eps)

  mha = dict(num_heads=num_heads, d_k=d, d_v=d)
  x = residual(
    "self_attention", lambda y: multi_head_attention(p["self_attention"], y, None, mask, **mha), x
  )
  if encoded is not None:
    x = residual(
      "cross_attention",
      lambda y: multi_head_attention(p["cross_attention"], y, encoded, cross_mask, **mha),
      x,
    )
  return residual("mlp", lambda y: feed_forward(p["mlp"], y, activation), x)


def causal(length):
  return np.array([[[[j <= i for j in range(length)] for i in range(length)]]])


def bert_encoder(p, tokens, segment_ids, attention_mask, *, num_heads, activation, eps):
  """BERT's encoder and pooler (Devlin et al. 2018, §3): x = LN(token + position + segment
  embeddings), post-LN layers whose attention sees the real keys only, pooled =
  tanh(dense(x[:, 0])). `p` is a BertModel's params. Returns ([embeddings, layer 1, ...], pooled).
  """
  e = p["embeddings"]
  tokens, segment_ids = np.asarray(tokens), np.asarray(segment_ids)
  x = (
    e["token_embed"]["embedding"][tokens]
    + e["position_embed"]["embedding"][None, : tokens.shape[1]]
    + e["segment_embed"]["embedding"][segment_ids]
  )
  states = [layer_norm(x, e["embed_norm"], eps)]
  key_mask = np.asarray(attention_mask, bool)[:, None, None, :]  # [b, 1, 1, k]
  i = 0
  while f"layer_{i}" in p:
    states.append(
      transformer_layer(
        p[f"layer_{i}"],
        states[-1],
        key_mask,
        num_heads=num_heads,
        activation=activation,
        pre_norm=False,
        eps=eps,
      )
    )
    i += 1
  return states, np.tanh(dense(states[-1][:, 0], p["pooler"]))


def bert_mlm_logits(p, hidden, *, activation, eps):
  """BERT's masked-LM head: LN(act(dense(h))) @ E^T + bias, E the token table (tied decoder).
  `p` is a BertForPreTraining's params."""
  x = layer_norm(ACTIVATIONS[activation](dense(hidden, p["mlm_transform"])), p["mlm_norm"], eps)
  return x @ p["bert"]["embeddings"]["token_embed"]["embedding"].T + p["mlm_output_bias"]


def sinusoids(length, d_model):
  """Vaswani et al. §3.5, one entry at a time: PE(pos, 2i) = sin(pos / 10000^(2i/d)),
  PE(pos, 2i+1) = cos(pos / 10000^(2i/d))."""
  table = np.zeros((length, d_model))
  for pos in range(length):
    for i in range(d_model // 2):
      table[pos, 2 * i] = math.sin(pos / 10000 ** (2 * i / d_model))
      table[pos, 2 * i + 1] = math.cos(pos / 10000 ** (2 * i / d_model))
  return table


def transformer_logits(p, source, target_in, *, num_heads, eps):
  """The encoder–decoder of Vaswani et al. §3 with post-LN ReLU layers and one embedding
  matrix E for source, target and output: embeddings E[x] * sqrt(d) + PE, encoder self-attention
  over the non-padding (id 0) source tokens, decoder causal self-attention and cross-attention
  over the source, logits y @ E^T. `p` is a tfjax Transformer's params."""
  source, target_in = np.asarray(source), np.asarray(target_in)
  table = p["token_embed"]["embedding"]
  d = table.shape[1]
  embed = lambda t: table[t] * math.sqrt(d) + sinusoids(t.shape[1], d)[None]
  layer = functools.partial(
    transformer_layer, num_heads=num_heads, activation="relu", pre_norm=False, eps=eps
  )
  source_keys = (source != 0)[:, None, None, :]  # [b, 1, 1, s]
  x = embed(source)
  for i in range(len([k for k in p["encoder"] if k.startswith("layer_")])):
    x = layer(p["encoder"][f"layer_{i}"], x, source_keys)
  y = embed(target_in)
  for i in range(len([k for k in p["decoder"] if k.startswith("layer_")])):
    y = layer(
      p["decoder"][f"layer_{i}"],
      y,
      causal(target_in.shape[1]),
      encoded=x,
      cross_mask=source_keys,
    )
  return y @ table.T


def vit_encoder(p, images, *, patch_size, num_heads, activation, eps, pooling="cls"):
  """ViT's body (Dosovitskiy et al. 2020, Eq. 1-4), one patch at a time: each P x P patch
  flattened (row, column, channel) and projected, [CLS] prepended ("cls"), positions added,
  pre-LN layers, a final LayerNorm; pooled = the [CLS] state, or the mean of the patches
  ("gap"). `p` is a ViTModel's params. Returns ([embeddings, layer 1, ...], last, pooled)."""
  images = np.asarray(images, np.float64)
  b, height, width, c = images.shape
  kernel = p["patch_embed"]["kernel"].reshape(patch_size * patch_size * c, -1)  # [P*P*C, d]
  patches = []
  for i in range(0, height, patch_size):  # row-major over the patch grid
    for j in range(0, width, patch_size):
      flat = images[:, i : i + patch_size, j : j + patch_size, :].reshape(b, -1)
      patches.append(flat @ kernel + p["patch_embed"]["bias"])
  x = np.stack(patches, axis=1)  # [b, N, d]
  if pooling == "cls":
    x = np.concatenate([np.broadcast_to(p["cls_token"], (b, 1, x.shape[-1])), x], axis=1)
  states = [x + p["position_embed"]["embedding"][None]]
  i = 0
  while f"layer_{i}" in p:
    layer = p[f"layer_{i}"]
    states.append(
      transformer_layer(
        layer, states[-1], num_heads=num_heads, activation=activation, pre_norm=True, eps=eps
      )
    )
    i += 1
  last = layer_norm(states[-1], p["final_norm"], eps)
  pooled = last[:, 0] if pooling == "cls" else last.mean(axis=1)
  if "pre_logits" in p:
    pooled = np.tanh(dense(pooled, p["pre_logits"]))
  return states, last, pooled
