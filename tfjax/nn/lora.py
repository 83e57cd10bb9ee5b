"""LoRA: low-rank adapters on frozen projections (Hu et al. 2021, "LoRA: Low-Rank Adaptation of
Large Language Models").

A target projection computes h = x W + b + (alpha / r) (x A) B (Eq. 3, with the alpha / r scaling
of §4.1), W frozen and A [in, r], B [r, out] trained. A is drawn as HF PEFT draws it
(kaiming-uniform, a = sqrt(5): U(-1/sqrt(in), 1/sqrt(in))) and B is zero, so a fresh adapter
changes nothing: step 0 computes the base model exactly (§4.1: "zero initialization for B").
Targets: the attention projections (fused `qkv`, `query`, `key_value`, `out`) and, with
`mlp=True`, the feed-forward `hidden` and `output` (§4.2 adapts the attention weights only; §7.1
compares the choices). The adapters are parameters `lora_a` and `lora_b` beside the projection's
`kernel`, so a pre-trained checkpoint (which has none) still names every other parameter.

`merge` folds trained adapters into the kernels (W <- W + (alpha / r) A B) and removes them:
what export and inference see is an ordinary model (§4.1: "no additional inference latency").
"""

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, Self

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
ADAPTERS = ("lora_a", "lora_b")  # parameter names of an adapter, beside its projection's kernel


@dataclasses.dataclass(frozen=True)
class LoRA:
  """Rank and scaling of the adapters; `mlp` adds the feed-forward projections to the targets."""

  rank: int
  alpha: float = 16.0  # h = x W + (alpha / rank) x A B (PEFT's default lora_alpha)
  mlp: bool = False

  def __post_init__(self):
    if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
      raise ValueError(f"lora.rank={self.rank!r} must be a whole number >= 1 (0: no LoRA)")
    if not self.alpha > 0:
      raise ValueError(
        f"lora.alpha={self.alpha!r} must be > 0 (the adapters are scaled by alpha / rank)"
      )

  @property
  def scale(self) -> float:
    return self.alpha / self.rank

  @classmethod
  def from_config(cls, config: Mapping[str, Any] | None) -> Self | None:
    """The LoRA a `config.lora` section asks for; None (no adapters) when it is absent or has
    rank 0. Raises a one-line ValueError on an unknown key, a negative rank or alpha <= 0."""
    if config is None:
      return None
    config = dict(config)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - known)
    if unknown:
      raise ValueError(f"unknown lora config keys {unknown}; known keys: {sorted(known)}")
    rank, alpha = config.get("rank", 0), config.get("alpha", cls.alpha)
    if not alpha > 0:
      raise ValueError(
        f"lora.alpha={alpha!r} must be > 0 (the adapters are scaled by alpha / rank)"
      )
    if isinstance(rank, int | float) and not isinstance(rank, bool) and rank < 0:
      raise ValueError(f"lora.rank={rank} is negative; use 0 (no LoRA) or a rank >= 1, e.g. 8")
    if rank == 0 and not isinstance(rank, bool):
      return None
    return cls(**config)


class LoRADense(nn.Module):
  """nn.Dense (the same `kernel` and `bias`, initialised alike) plus an adapter `lora_a` [in, r],
  `lora_b` [r, out]: y = x W + b + (alpha / r) (x A) B."""

  features: int
  rank: int
  alpha: float
  use_bias: bool = True
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros
  dtype: jnp.dtype | None = None
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    d_in = x.shape[-1]
    if self.rank > min(d_in, self.features):
      raise ValueError(
        f"lora.rank={self.rank} is larger than the {self.name!r} projection ({d_in} -> "
        f"{self.features}); choose lora.rank <= {min(d_in, self.features)}"
      )
    kernel = self.param("kernel", self.kernel_init, (d_in, self.features), self.param_dtype)
    bias = None
    if self.use_bias:
      bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
    # PEFT's kaiming_uniform_(a=sqrt(5)) on A: U(-1/sqrt(in), 1/sqrt(in)); B = 0 (Hu et al. §4.1).
    a_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
    lora_a = self.param("lora_a", a_init, (d_in, self.rank), self.param_dtype)
    lora_b = self.param(
      "lora_b", nn.initializers.zeros, (self.rank, self.features), self.param_dtype
    )
    x, kernel, bias, lora_a, lora_b = nn.dtypes.promote_dtype(
      x, kernel, bias, lora_a, lora_b, dtype=self.dtype
    )
    contract = (((x.ndim - 1,), (0,)), ((), ()))
    y = jax.lax.dot_general(x, kernel, contract)  # [..., out], as nn.Dense
    if bias is not None:
      y += jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
    low = jax.lax.dot_general(x, lora_a, contract)  # [..., r]
    return y + (self.alpha / self.rank) * jax.lax.dot_general(low, lora_b, contract)


def dense(features: int, lora: LoRA | None, **kwargs: Any) -> nn.Module:
  """The projection the blocks use: nn.Dense, or with `lora` a LoRADense of the same parameters
  plus its adapter. `kwargs` are nn.Dense's (use_bias, kernel_init, dtype, param_dtype, name)."""
  if lora is None:
    return nn.Dense(features, **kwargs)
  return LoRADense(features, rank=lora.rank, alpha=lora.alpha, **kwargs)


# --------------------------------------------------------------------------- parameter trees
# Pure functions of parameter trees (nested dicts, unrolled `layer_i` or scanned `layers` with a
# leading layer axis): an adapter is a dict holding `kernel`, `lora_a` and `lora_b`.


def _is_adapter_dict(node: Any) -> bool:
  return isinstance(node, Mapping) and all(name in node for name in ADAPTERS)


def _names(path: tuple[Any, ...]) -> list[str]:
  return [str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey)]


def has_adapters(params: Any) -> bool:
  """Whether any projection of `params` carries an adapter."""
  found = []
  jax.tree.map(lambda node: found.append(_is_adapter_dict(node)), params, is_leaf=_is_adapter_dict)
  return any(found)


def base_params(params: Any) -> Any:
  """`params` without their adapters: the tree a pre-trained checkpoint of the same model holds
  (`params` itself when they hold none)."""
  if not has_adapters(params):
    return params
  drop = lambda node: {k: v for k, v in node.items() if k not in ADAPTERS}
  return jax.tree.map(
    lambda n: drop(n) if _is_adapter_dict(n) else n, params, is_leaf=_is_adapter_dict
  )


def with_adapters(params: Any, adapted: Any) -> Any:
  """`params` (e.g. pre-trained weights) with the adapters of `adapted` (a fresh init of the same
  model with LoRA) beside their kernels: how a LoRA run adds its adapters to a checkpoint."""

  def add(node: Any, fresh: Any) -> Any:
    if not isinstance(fresh, Mapping):
      return node
    out = {k: add(v, fresh[k]) if k in fresh else v for k, v in node.items()}
    out.update({k: fresh[k] for k in ADAPTERS if k in fresh})
    return out

  return add(params, adapted)


def trainable(params: Any, frozen: str) -> Any:
  """A tree of bools like `params`: False for the pre-trained weights under `params[frozen]`
  (`frozen=""`: the whole tree is the pre-trained model), True for the adapters and for
  everything outside `frozen` (the task's new head, as PEFT's `modules_to_save` keeps a
  classifier trainable)."""

  def leaf(path: tuple[Any, ...], _: Any) -> bool:
    names = _names(path)
    if names and names[-1] in ADAPTERS:
      return True
    return bool(frozen) and (not names or names[0] != frozen)

  return jax.tree_util.tree_map_with_path(leaf, params)


def merge(params: Any, lora: LoRA) -> Any:
  """`params` with every adapter folded into its kernel, W <- W + (alpha / r) A B, and removed:
  the ordinary model that computes what the adapted one does (up to float rounding). Works on
  unrolled and scanned (stacked) layers, and on a `{"params": ...}` variables dict."""

  def fold(node: Mapping[str, Any]) -> dict[str, Any]:
    a, b, kernel = node["lora_a"], node["lora_b"], node["kernel"]
    if a.shape[-1] != lora.rank:
      raise ValueError(
        f"the adapters have rank {a.shape[-1]}, the config says lora.rank={lora.rank}; merge "
        "them with the lora settings they were trained with"
      )
    delta = jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)  # [(layers,) in, out]
    merged = jnp.asarray(kernel, jnp.float32) + lora.scale * delta
    out = {k: v for k, v in node.items() if k not in ADAPTERS}
    out["kernel"] = merged.astype(kernel.dtype)
    return out

  return jax.tree.map(
    lambda n: fold(n) if _is_adapter_dict(n) else n, params, is_leaf=_is_adapter_dict
  )


def count(params: Any, mask: Any | Callable[[Any], Any] | None = None) -> int:
  """Number of parameters of `params` (arrays or ShapeDtypeStructs) where `mask` is True (all
  when None; a callable is applied to `params`)."""
  if callable(mask):
    mask = mask(params)
  sizes = jax.tree.map(lambda x: math.prod(x.shape), params)
  if mask is None:
    return sum(jax.tree.leaves(sizes))
  return sum(s for s, m in zip(jax.tree.leaves(sizes), jax.tree.leaves(mask), strict=True) if m)
