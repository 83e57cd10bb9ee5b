"""Autoregressive sampling from a GPT with a key/value cache: greedy, temperature, top-k, top-p.

The sampling filters are pure functions of logits [b, V]. `generate` prefills the cache with a
batch of prompts of different lengths (right-padded to the longest) in one forward pass, then
runs `search.decode_loop` over the GPT's one-token step function, each row at its own position,
choosing with `search.greedy` at temperature 0 and with `sample_token` otherwise, inside one
jit-compiled `lax.while_loop` whose shapes never change. The compiled function is cached per
model config, batch size, prompt length, `max_new_tokens` and sampling mode, so repeated calls do
not retrace. Repetition control (`repetition.py`) filters the logits first when asked for.
`prefill`, `step_fn_of` and `join_prompts` are shared with beam search (`generation.py`), which
also holds `complete_texts` (text in, text out)."""

import functools
from collections.abc import Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from tfjax.inference import repetition, search
from tfjax.models.gpt import GPT, GPTConfig

Array = jax.Array


# ----------------------------------------------------------------------------------------------
# Sampling filters: pure functions of float32 logits [b, V].
# ----------------------------------------------------------------------------------------------


def apply_temperature(logits: Array, temperature: float | Array) -> Array:
  """logits / temperature: below 1 sharpens the distribution, above 1 flattens it.

  temperature must be > 0; temperature 0 means greedy decoding, which `sample_token` handles.
  """
  return logits / jnp.asarray(temperature, logits.dtype)


def top_k_filter(logits: Array, k: int) -> Array:
  """Keeps the k largest logits of each row and sets the others to -inf; k=0 keeps all.

  Tokens tied with the k-th largest logit are kept too (as HF's TopKLogitsWarper does).
  """
  if k < 0:
    raise ValueError(f"top_k={k} must be >= 0 (0 disables top-k filtering)")
  vocab_size = logits.shape[-1]
  if k == 0 or k >= vocab_size:
    return logits
  kth_largest = jax.lax.top_k(logits, k)[0][..., -1:]  # [b, 1]
  return jnp.where(logits >= kth_largest, logits, -jnp.inf)


def top_p_filter(logits: Array, p: float | Array) -> Array:
  """Nucleus filtering (Holtzman et al. 2019, §3.1): keeps the smallest set of most likely tokens
  whose cumulative probability reaches p, always including the most likely token; the others
  get -inf. p=1.0 (as a Python number) keeps everything.
  """
  if isinstance(p, int | float):
    if not 0.0 < p <= 1.0:
      raise ValueError(f"top_p={p} must be in (0, 1] (1.0 disables nucleus filtering)")
    if p >= 1.0:
      return logits
  order = jnp.argsort(-logits, axis=-1)  # [b, V], most likely first
  sorted_probs = jax.nn.softmax(jnp.take_along_axis(logits, order, axis=-1), axis=-1)
  cumulative = jnp.cumsum(sorted_probs, axis=-1)
  # A token is kept if the tokens ranked above it do not yet reach p; the top token always is.
  mass_before = jnp.concatenate([jnp.zeros_like(cumulative[..., :1]), cumulative[..., :-1]], -1)
  keep_sorted = mass_before < p
  keep = jnp.take_along_axis(keep_sorted, jnp.argsort(order, axis=-1), axis=-1)  # vocab order
  return jnp.where(keep, logits, -jnp.inf)


def sample_token(
  rng: Array,
  logits: Array,
  temperature: float | Array = 1.0,
  top_k: int = 0,
  top_p: float | Array = 1.0,
  *,
  greedy: bool = False,
) -> Array:
  """Draws one token id per row of logits [b, V] -> int32 [b].

  Applies temperature, then top-k, then top-p, as HF's samplers do. `greedy=True`, or a
  temperature of 0, returns the argmax; a traced temperature of 0 does too.
  """
  best = jnp.argmax(logits, axis=-1).astype(jnp.int32)
  if greedy:
    return best
  if isinstance(temperature, int | float):
    if temperature < 0:
      raise ValueError(f"temperature={temperature} must be >= 0 (0 means greedy)")
    if temperature == 0:
      return best
  temperature = jnp.asarray(temperature, logits.dtype)
  positive = temperature > 0
  filtered = apply_temperature(logits, jnp.where(positive, temperature, 1.0))
  filtered = top_p_filter(top_k_filter(filtered, top_k), top_p)
  sampled = jax.random.categorical(rng, filtered, axis=-1).astype(jnp.int32)
  return jnp.where(positive, sampled, best)


# ----------------------------------------------------------------------------------------------
# Generation with a key/value cache.
# ----------------------------------------------------------------------------------------------


@flax.struct.dataclass
class GenerationResult:
  """Output of `generate`.

  tokens: [b, prompt_len + max_new_tokens] int32: each row's prompt, its generated tokens (an
    EOS it emitted included), then pad_id. prompt_len is the longest prompt.
  lengths: [b] number of valid tokens per row, prompt and EOS included.
  prompt_lengths: [b] length of each row's prompt.
  finished: [b] True where the row stopped because it emitted eos_id.
  """

  tokens: Array
  lengths: Array
  prompt_lengths: Array
  finished: Array


def generated_tokens(
  result: GenerationResult, prompt_lengths: Sequence[int] | np.ndarray | None = None
) -> list[list[int]]:
  """The new tokens of each row, without the prompt and without a final EOS.

  `prompt_lengths` defaults to the lengths `generate` recorded in the result.
  """
  tokens = np.asarray(result.tokens)
  lengths = np.asarray(result.lengths)
  finished = np.asarray(result.finished)
  starts = np.asarray(result.prompt_lengths if prompt_lengths is None else prompt_lengths)
  return [tokens[i, starts[i] : lengths[i] - int(finished[i])].tolist() for i in range(len(tokens))]


def init_cache(config: GPTConfig, batch_size: int, length: int) -> Any:
  """An all-zero key/value cache of the decoding model for `batch_size` rows of `length` tokens.

  Built from shapes only (`jax.eval_shape` of `init`): no parameters are computed.
  """
  model = GPT(config.replace(decode=True))
  return search.zeros_cache(model.init, jax.ShapeDtypeStruct((batch_size, length), jnp.int32))


def generate(
  model_config: GPTConfig,
  params: Any,
  prompts: Sequence[Sequence[int]] | np.ndarray,
  lengths: Sequence[int] | np.ndarray | None = None,
  *,
  max_new_tokens: int,
  rng: Array | None = None,
  temperature: float = 1.0,
  top_k: int = 0,
  top_p: float = 1.0,
  eos_id: int | None = None,
  pad_id: int = 0,
  no_repeat_ngram_size: int = 0,
  repetition_penalty: float = 1.0,
) -> GenerationResult:
  """Samples up to `max_new_tokens` tokens after each prompt, with a key/value cache.

  Args:
    model_config: the GPT's config (its `decode` and dropout settings are overridden: decoding
      uses the cache and no dropout).
    params: the GPT's `params` collection (a `{"params": ...}` variables dict is accepted).
    prompts: a list of token-id lists of any (non-zero) lengths, or an int array [b, P] whose
      row i holds its prompt in the first `lengths[i]` entries (default: all P).
    max_new_tokens: tokens to generate per row; the cache holds longest prompt + this many.
    rng: a PRNG key; step s samples with `fold_in(rng, s)`, so a seed reproduces its output.
      Needed only when sampling (temperature > 0).
    temperature: 0 means greedy (argmax); otherwise logits are divided by it.
    top_k: keep only the k most likely tokens (0: no limit).
    top_p: nucleus sampling threshold (1.0: no limit).
    eos_id: a row stops after emitting this token and is padded with pad_id; generation ends
      early when every row has stopped. None: always generate `max_new_tokens`.
    pad_id: fills the tokens after each row's end.
    no_repeat_ngram_size: n > 0 bans any token that would repeat an n-gram of the row's prompt
      and output so far (`repetition.no_repeat_ngram`); 0: off.
    repetition_penalty: CTRL's penalty on the logits of tokens already in the row
      (`repetition.repetition_penalty`; Keskar et al. 2019 use 1.2); 1.0: off.

  Returns:
    A GenerationResult (see `generated_tokens` for the new tokens as lists).
  """
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
  repetition.check_options(no_repeat_ngram_size, repetition_penalty)
  if temperature < 0:
    raise ValueError(f"temperature={temperature} must be >= 0 (0 means greedy)")
  if top_k < 0:
    raise ValueError(f"top_k={top_k} must be >= 0 (0 disables top-k filtering)")
  if not 0.0 < top_p <= 1.0:
    raise ValueError(f"top_p={top_p} must be in (0, 1] (1.0 disables nucleus filtering)")
  tokens, prompt_lengths = pad_prompts(prompts, lengths, pad_id, model_config.vocab_size)
  check_total_length(tokens.shape[1], max_new_tokens, model_config.max_len)
  greedy = temperature == 0
  if rng is None:
    if not greedy:
      raise ValueError("sampling (temperature > 0) needs a PRNG key: pass rng=jax.random.key(seed)")
    rng = jax.random.key(0)  # unused by greedy decoding
  return _generate(
    params_collection(params),
    jnp.asarray(tokens),
    jnp.asarray(prompt_lengths),
    rng,
    jnp.float32(temperature),
    jnp.float32(top_p),
    jnp.int32(-1 if eos_id is None else eos_id),
    jnp.int32(pad_id),
    jnp.float32(repetition_penalty),
    config=decoding_config(model_config),
    max_new_tokens=max_new_tokens,
    greedy=greedy,
    top_k=0 if greedy else top_k,  # unused when greedy: keep one compiled function
    use_top_p=top_p < 1.0 and not greedy,
    no_repeat_ngram_size=no_repeat_ngram_size,
    use_repetition_penalty=repetition_penalty != 1.0,
  )


def decoding_config(model_config: GPTConfig) -> GPTConfig:
  """The config of the decoding model: key/value cache on, no dropout."""
  return model_config.replace(decode=True, dropout_rate=0.0, attention_dropout_rate=0.0)


def params_collection(params: Any) -> Any:
  """The `params` collection (a `{"params": ...}` variables dict is accepted)."""
  if isinstance(params, dict) and set(params) == {"params"}:
    return params["params"]
  return params


def check_total_length(prompt_len: int, max_new_tokens: int, max_len: int) -> None:
  """Raises a one-line ValueError, naming the fixes, when the longest prompt plus
  `max_new_tokens` needs more positions than the model has."""
  total_len = prompt_len + max_new_tokens
  if total_len > max_len:
    fixes = []
    if max_new_tokens < max_len:
      fixes.append(f"shorten the longest prompt to at most {max_len - max_new_tokens} tokens")
    if prompt_len < max_len:
      fixes.append(f"ask for at most {max_len - prompt_len} new tokens")
    fixes = " or ".join(fixes) or (
      f"shorten the prompts and ask for fewer new tokens ({max_len} positions in all), or use "
      "a model with a longer context"
    )
    raise ValueError(
      f"the longest prompt ({prompt_len} tokens) plus max_new_tokens={max_new_tokens} needs "
      f"{total_len} positions, more than the model's max_len={max_len}; {fixes}"
    )


def pad_prompts(
  prompts: Sequence[Sequence[int]] | np.ndarray,
  lengths: Sequence[int] | np.ndarray | None,
  pad_id: int,
  vocab_size: int,
) -> tuple[np.ndarray, np.ndarray]:
  """Right-pads prompts into int32 [b, P] (P = longest prompt) and checks them; lengths [b]."""
  if isinstance(prompts, np.ndarray | jax.Array):
    array = np.asarray(prompts)
    if array.ndim != 2:
      raise ValueError(f"prompts must be a [batch, length] array, got shape {array.shape}")
    lengths = np.full(len(array), array.shape[1]) if lengths is None else np.asarray(lengths)
    if lengths.shape != (len(array),) or np.any(lengths > array.shape[1]):
      raise ValueError(
        f"lengths {lengths.tolist()} must give one length <= {array.shape[1]} per prompt row"
      )
    rows = [array[i, :n] for i, n in enumerate(lengths)]
  else:
    if lengths is not None:
      raise ValueError("lengths is only for array prompts; a list of lists has its own lengths")
    rows = [np.asarray(row, dtype=np.int64).reshape(-1) for row in prompts]
  if not rows:
    raise ValueError("no prompts given; pass at least one prompt")
  prompt_lengths = np.array([len(row) for row in rows], dtype=np.int32)
  empty = np.flatnonzero(prompt_lengths == 0).tolist()
  if empty:
    raise ValueError(
      f"prompts {empty} are empty; every prompt needs at least one token (e.g. a BOS token)"
    )
  tokens = np.full((len(rows), prompt_lengths.max()), pad_id, dtype=np.int32)
  for i, row in enumerate(rows):
    if row.min() < 0 or row.max() >= vocab_size:
      raise ValueError(f"prompt {i} has token ids outside [0, vocab_size={vocab_size})")
    tokens[i, : len(row)] = row
  return tokens, prompt_lengths


def step_fn_of(model: GPT, params: Any) -> search.StepFn:
  """The GPT's cached one-token step, a `search.StepFn`: logits [n, V] at the fed position."""

  def step_fn(tokens: Array, positions: Array, cache: Any, context: None) -> tuple[Array, Any]:
    logits, variables = model.apply(
      {"params": params, "cache": cache},
      tokens,
      positions=positions,
      deterministic=True,
      mutable=["cache"],
    )
    return logits[:, -1], variables["cache"]  # [b, V] at the last fed position

  return step_fn


def prefill(
  model: GPT, params: Any, prompts: Array, prompt_lengths: Array, total_len: int
) -> tuple[Array, Any]:
  """One forward pass over right-padded prompts [b, P] at positions 0..P-1 into a fresh cache of
  `total_len` positions; returns (logits [b, V] of each prompt's last token, the cache).

  Keys/values written at a row's padding positions are never seen (each query sees only
  positions <= its own) and are overwritten as the row grows.
  """
  batch, prompt_len = prompts.shape
  positions = jnp.broadcast_to(jnp.arange(prompt_len), (batch, prompt_len))
  logits, variables = model.apply(
    {"params": params, "cache": init_cache(model.config, batch, total_len)},
    prompts,
    positions=positions,
    deterministic=True,
    mutable=["cache"],
  )
  return logits[jnp.arange(batch), prompt_lengths - 1], variables["cache"]


def join_prompts(
  prompts: Array, prompt_lengths: Array, new: Array, new_lengths: Array, pad_id: Array | int
) -> Array:
  """Each row's prompt, then its first new_lengths new tokens, then pad_id: [b, P + N] from
  prompts [b, P] (right-padded) and new tokens [b, N]."""
  max_new_tokens = new.shape[1]
  total_len = prompts.shape[1] + max_new_tokens
  column = jnp.arange(total_len)[None, :] - prompt_lengths[:, None]  # index into the new tokens
  new = jnp.take_along_axis(new, jnp.clip(column, 0, max_new_tokens - 1), axis=1)
  prompt_part = jnp.pad(prompts, ((0, 0), (0, max_new_tokens)), constant_values=pad_id)
  return jnp.where(column < 0, prompt_part, jnp.where(column < new_lengths[:, None], new, pad_id))


@functools.partial(
  jax.jit,
  static_argnames=(
    "config",
    "max_new_tokens",
    "greedy",
    "top_k",
    "use_top_p",
    "no_repeat_ngram_size",
    "use_repetition_penalty",
  ),
)
def _generate(
  params: Any,
  prompts: Array,
  prompt_lengths: Array,
  rng: Array,
  temperature: Array,
  top_p: Array,
  eos_id: Array,
  pad_id: Array,
  repetition_penalty: Array,
  *,
  config: GPTConfig,
  max_new_tokens: int,
  greedy: bool,
  top_k: int,
  use_top_p: bool,
  no_repeat_ngram_size: int,
  use_repetition_penalty: bool,
) -> GenerationResult:
  """Prefill + `search.decode_loop`; `config` has decode=True. Traced values change without a
  recompile; eos_id -1 never matches."""
  total_len = prompts.shape[1] + max_new_tokens
  model = GPT(config)
  rows = jnp.arange(prompts.shape[0])

  def sample(step: Array, logits: Array) -> Array:
    p = top_p if use_top_p else 1.0
    return sample_token(jax.random.fold_in(rng, step), logits, temperature, top_k, p)

  step_fn = step_fn_of(model, params)
  first_logits, cache = prefill(model, params, prompts, prompt_lengths, total_len)
  process = repetition.repetition_control(
    no_repeat_ngram_size, repetition_penalty if use_repetition_penalty else None
  )
  if process is not None:  # off: the loop is exactly as without repetition control
    step_fn, cache, first_logits = repetition.with_history(
      step_fn, cache, first_logits, prompts, prompt_lengths, total_len, process
    )
  decoded = search.decode_loop(
    step_fn,
    cache,
    None,
    choose=search.greedy if greedy else sample,
    last=prompts[rows, prompt_lengths - 1],
    positions=prompt_lengths - 1,
    max_len=max_new_tokens,
    eos_id=eos_id,
    pad_id=pad_id,
    first_logits=first_logits,  # [b, V], of each prompt's last token
  )
  return GenerationResult(
    tokens=join_prompts(prompts, prompt_lengths, decoded.sequences, decoded.lengths, pad_id),
    lengths=prompt_lengths + decoded.lengths,
    prompt_lengths=prompt_lengths,
    finished=decoded.finished,
  )
