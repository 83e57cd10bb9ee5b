"""Beam search for a GPT after prompts, and text in / text out for every strategy (stop strings).

`beam_generate` prefills the key/value cache once for the [batch] prompts (as `sampling.generate`
does), then runs the one `search.beam_search` from each prompt's last token and its logits, each
example at its own position: the search expands the cache to batch * beam rows and reorders it
by parent beam after every step. Scores use the GNMT length penalty (Wu et al. 2016, Eq. 14) over
the new tokens only; finishing and stopping follow fairseq's rules (see `search.beam_search`),
so beam_size=1 is greedy decoding. `Decoding` names a strategy and `decode` runs it on token
ids; `complete_texts` decodes text with it and cuts it at stop strings.
"""

import dataclasses
import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from tfjax.data.tokenizers.base import Tokenizer
from tfjax.inference import repetition, sampling, search
from tfjax.models.gpt import GPT, GPTConfig
from tfjax.nn.stack import STACKED_LAYERS

Array = jax.Array


@flax.struct.dataclass
class BeamResult:
  """Output of `beam_generate`: the beam_size best hypotheses per prompt, best first.

  tokens: [b, beam, prompt_len + max_new_tokens] int32: the prompt, the hypothesis' new tokens
    (EOS included), then pad_id. prompt_len is the longest prompt.
  lengths: [b, beam] valid tokens, prompt and EOS included (0 in an empty slot).
  scores: [b, beam] summed log-probabilities of the new tokens / the GNMT length penalty; -inf
    marks an empty slot (possible only when repetition control bans every continuation).
  prompt_lengths: [b].
  finished: [b, beam] True where the hypothesis ended with eos_id (not at max_new_tokens).
  """

  tokens: Array
  lengths: Array
  scores: Array
  prompt_lengths: Array
  finished: Array

  def best(self) -> sampling.GenerationResult:
    """The best hypothesis of each prompt, as `sampling.generate` returns its rows."""
    return sampling.GenerationResult(
      tokens=self.tokens[:, 0],
      lengths=self.lengths[:, 0],
      prompt_lengths=self.prompt_lengths,
      finished=self.finished[:, 0],
    )


def beam_generate(
  model_config: GPTConfig,
  params: Any,
  prompts: Sequence[Sequence[int]] | np.ndarray,
  lengths: Sequence[int] | np.ndarray | None = None,
  *,
  beam_size: int,
  max_new_tokens: int,
  length_penalty: float = 0.6,
  eos_id: int | None = None,
  pad_id: int = 0,
  no_repeat_ngram_size: int = 0,
  repetition_penalty: float = 1.0,
) -> BeamResult:
  """Beam search of up to `max_new_tokens` tokens after each prompt, with a key/value cache.

  Args:
    model_config, params, prompts, lengths, max_new_tokens, pad_id, no_repeat_ngram_size,
      repetition_penalty: as for `sampling.generate`; the repetition options see each
      hypothesis' own tokens (prompt included) and change its logits before the log-softmax.
    beam_size: hypotheses kept per prompt, 1 to vocab_size; 1 is greedy decoding.
    length_penalty: the GNMT exponent alpha (0: summed log-probability alone; Wu et al. and the
      Transformer use 0.6).
    eos_id: a hypothesis ends with this token; None: every hypothesis runs to max_new_tokens.

  Returns:
    A BeamResult; `.best()` gives the best hypotheses as a `sampling.GenerationResult`.
  """
  if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
    raise ValueError(f"beam_size={beam_size!r} must be an int >= 1 (1: no beam search)")
  if beam_size > model_config.vocab_size:
    raise ValueError(
      f"beam_size={beam_size} is larger than the vocabulary (vocab_size="
      f"{model_config.vocab_size}), so some beams could never be filled; choose beam_size <= "
      f"{model_config.vocab_size}"
    )
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
  repetition.check_options(no_repeat_ngram_size, repetition_penalty)
  tokens, prompt_lengths = sampling.pad_prompts(prompts, lengths, pad_id, model_config.vocab_size)
  sampling.check_total_length(tokens.shape[1], max_new_tokens, model_config.max_len)
  return _beam_generate(
    sampling.params_collection(params),
    jnp.asarray(tokens),
    jnp.asarray(prompt_lengths),
    jnp.float32(length_penalty),
    jnp.int32(-1 if eos_id is None else eos_id),
    jnp.int32(pad_id),
    jnp.float32(repetition_penalty),
    config=sampling.decoding_config(model_config),
    beam_size=beam_size,
    max_new_tokens=max_new_tokens,
    no_repeat_ngram_size=no_repeat_ngram_size,
    use_repetition_penalty=repetition_penalty != 1.0,
  )


def _batch_major(step_fn: search.StepFn, cache: Any) -> tuple[search.StepFn, Any]:
  """A scanned GPT's cache has a leading [num_layers] axis; beam search expands and reorders the
  leading axis, so it sees [batch, num_layers, ...] and the model gets its own layout back."""

  def swap(tree: Any) -> Any:
    def leaf(path: tuple, x: Array) -> Array:
      scanned = any(getattr(k, "key", None) == STACKED_LAYERS for k in path)
      return jnp.swapaxes(x, 0, 1) if scanned else x

    return jax.tree_util.tree_map_with_path(leaf, tree)

  def step(tokens: Array, positions: Array, cache: Any, context: Any) -> tuple[Array, Any]:
    logits, cache = step_fn(tokens, positions, swap(cache), context)
    return logits, swap(cache)

  return step, swap(cache)


@functools.partial(
  jax.jit,
  static_argnames=(
    "config",
    "beam_size",
    "max_new_tokens",
    "no_repeat_ngram_size",
    "use_repetition_penalty",
  ),
)
def _beam_generate(
  params: Any,
  prompts: Array,
  prompt_lengths: Array,
  alpha: Array,
  eos_id: Array,
  pad_id: Array,
  repetition_penalty: Array,
  *,
  config: GPTConfig,
  beam_size: int,
  max_new_tokens: int,
  no_repeat_ngram_size: int,
  use_repetition_penalty: bool,
) -> BeamResult:
  """Prefill + `search.beam_search`; `config` has decode=True; eos_id -1 never matches."""
  batch = prompts.shape[0]
  total_len = prompts.shape[1] + max_new_tokens
  model = GPT(config)
  step_fn = sampling.step_fn_of(model, params)
  first_logits, cache = sampling.prefill(model, params, prompts, prompt_lengths, total_len)
  if config.scan_layers:
    step_fn, cache = _batch_major(step_fn, cache)
  process = repetition.repetition_control(
    no_repeat_ngram_size, repetition_penalty if use_repetition_penalty else None
  )
  if process is not None:
    step_fn, cache, first_logits = repetition.with_history(
      step_fn, cache, first_logits, prompts, prompt_lengths, total_len, process
    )
  sequences, scores = search.beam_search(
    step_fn,
    cache,
    None,
    batch_size=batch,
    beam_size=beam_size,
    max_len=max_new_tokens,
    bos_id=0,  # unused: the search starts from each prompt's last token
    eos_id=eos_id,
    alpha=alpha,
    last=prompts[jnp.arange(batch), prompt_lengths - 1],
    positions=prompt_lengths - 1,
    first_logits=first_logits,  # [b, V]
  )  # [b, beam, max_new_tokens], [b, beam]
  is_eos = sequences == eos_id
  ended = jnp.any(is_eos, axis=-1)
  filled = scores > -jnp.inf
  new_lengths = jnp.where(ended, jnp.argmax(is_eos, axis=-1) + 1, max_new_tokens) * filled
  rows = lambda x: jnp.repeat(x, beam_size, axis=0)  # noqa: E731  [b, ...] -> [b * beam, ...]
  tokens = sampling.join_prompts(
    rows(prompts),
    rows(prompt_lengths),
    sequences.reshape(batch * beam_size, max_new_tokens),
    new_lengths.reshape(-1),
    pad_id,
  )
  return BeamResult(
    tokens=tokens.reshape(batch, beam_size, total_len),
    lengths=(prompt_lengths[:, None] + new_lengths) * filled,
    scores=scores,
    prompt_lengths=prompt_lengths,
    finished=ended & filled,
  )


# ----------------------------------------------------------------------------------------------
# Text in, text out.
# ----------------------------------------------------------------------------------------------


def cut_at_stop(text: str, stop: Sequence[str], start: int = 0) -> str:
  """`text` up to the earliest occurrence, at or after `start`, of any stop string (excluded)."""
  found = [i for i in (text.find(s, start) for s in stop) if i >= 0]
  return text[: min(found)] if found else text


SAMPLING_FIELDS = ("temperature", "top_k", "top_p", "seed")  # Decoding's fields beams ignore


@dataclasses.dataclass(frozen=True)
class Decoding:
  """How each new token is chosen: beam search when beam_size > 1 (deterministic; temperature,
  top_k, top_p and seed unused), else sampling (temperature 0: greedy); the repetition options
  apply to both (see `sampling.generate` and `beam_generate`)."""

  beam_size: int = 1
  length_penalty: float = 0.6
  temperature: float = 0.0
  top_k: int = 0
  top_p: float = 1.0
  no_repeat_ngram_size: int = 0
  repetition_penalty: float = 1.0
  seed: int = 0

  @classmethod
  def from_config(cls, config: Mapping[str, Any]) -> "Decoding":
    """The fields `config` (e.g. a task's config.decode) sets; its other keys are not ours."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in dict(config).items() if k in names})

  def overridden(self, given: Mapping[str, Any]) -> "Decoding":
    """This strategy with the fields in `given` replaced (a CLI's flags over a run's
    config.decode): a sampling field without beam_size turns beam search into sampling; top_k,
    top_p or seed over a greedy strategy (temperature 0) would change nothing, so they are
    refused unless a temperature comes with them."""
    given = dict(given)
    if "beam_size" not in given and set(SAMPLING_FIELDS) & set(given):
      given["beam_size"] = 1
    decoding = dataclasses.replace(self, **given)
    idle = [f"{k}={given[k]}" for k in ("top_k", "top_p", "seed") if k in given]
    if decoding.beam_size == 1 and decoding.temperature == 0 and idle:
      verb = "has" if len(idle) == 1 else "have"
      raise ValueError(
        f"{', '.join(idle)} {verb} no effect: this decoding is greedy (temperature 0); give a "
        "temperature too, e.g. --temperature=0.8"
      )
    return decoding

  @property
  def name(self) -> str:
    """For reports: "beam 4", "greedy" or "sampled"."""
    if self.beam_size > 1:
      return f"beam {self.beam_size}"
    return "greedy" if self.temperature == 0 else "sampled"


def decode(
  model_config: GPTConfig,
  params: Any,
  prompts: Sequence[Sequence[int]] | np.ndarray,
  lengths: Sequence[int] | np.ndarray | None = None,
  *,
  decoding: Decoding,
  max_new_tokens: int,
  eos_id: int | None,
  pad_id: int = 0,
  rng: Array | None = None,
) -> sampling.GenerationResult:
  """Up to `max_new_tokens` after each prompt, by `decoding`'s strategy: the best hypothesis of
  `beam_generate`, or `sampling.generate` with `rng` (default: the key of decoding.seed)."""
  common = dict(
    max_new_tokens=max_new_tokens,
    eos_id=eos_id,
    pad_id=pad_id,
    no_repeat_ngram_size=decoding.no_repeat_ngram_size,
    repetition_penalty=decoding.repetition_penalty,
  )
  if decoding.beam_size != 1:
    return beam_generate(
      model_config,
      params,
      prompts,
      lengths,
      beam_size=decoding.beam_size,
      length_penalty=decoding.length_penalty,
      **common,
    ).best()
  return sampling.generate(
    model_config,
    params,
    prompts,
    lengths,
    rng=jax.random.key(decoding.seed) if rng is None else rng,
    temperature=decoding.temperature,
    top_k=decoding.top_k,
    top_p=decoding.top_p,
    **common,
  )


def complete_texts(
  model_config: GPTConfig,
  params: Any,
  tokenizer: Tokenizer,
  prompts: Sequence[str],
  *,
  max_new_tokens: int,
  seed: int = 0,
  temperature: float = 1.0,
  top_k: int = 0,
  top_p: float = 1.0,
  beam_size: int = 1,
  length_penalty: float = 0.6,
  no_repeat_ngram_size: int = 0,
  repetition_penalty: float = 1.0,
  stop: Sequence[str] = (),
) -> list[str]:
  """Text in, text out: each prompt followed by its continuation, up to EOS or a stop string.

  beam_size 1 samples with `sampling.generate` (temperature 0: greedy); beam_size > 1 gives the
  best hypothesis of `beam_generate`, which is deterministic (seed, temperature, top_k and top_p
  are then unused). The repetition options apply to both.

  Stop strings are applied on the host, after decoding: every row runs to EOS or max_new_tokens,
  then its continuation's text (not the prompt's) is cut before the first stop string in it. So
  the tokens past a stop cost compute. For sampling and greedy the kept text is the one stopping
  inside the loop would give (a step sees only the tokens before it); beam search ranks its
  hypotheses without knowing the stop strings.
  """
  stop = (stop,) if isinstance(stop, str) else tuple(stop)
  if any(not isinstance(s, str) or not s for s in stop):
    raise ValueError(f"stop strings {list(stop)!r} must be non-empty strings")
  prompt_ids = [tokenizer.encode(p) for p in prompts]
  empty = [p for p, ids in zip(prompts, prompt_ids, strict=True) if not ids]
  if empty:
    raise ValueError(
      f"prompt {empty[0]!r} encodes to no tokens, so there is nothing to continue; give every "
      "prompt some text"
    )
  pad_id = getattr(tokenizer, "pad_id", None)
  decoding = Decoding(
    beam_size=beam_size,
    length_penalty=length_penalty,
    temperature=temperature,
    top_k=top_k,
    top_p=top_p,
    no_repeat_ngram_size=no_repeat_ngram_size,
    repetition_penalty=repetition_penalty,
    seed=seed,
  )
  result = decode(
    model_config,
    params,
    prompt_ids,
    decoding=decoding,
    max_new_tokens=max_new_tokens,
    eos_id=tokenizer.eos_id,
    pad_id=0 if pad_id is None else pad_id,
  )
  texts = []
  for ids, new in zip(prompt_ids, sampling.generated_tokens(result), strict=True):
    text = tokenizer.decode(ids + new)
    prompt_end = len(os.path.commonprefix([text, tokenizer.decode(ids)]))
    texts.append(cut_at_stop(text, stop, prompt_end))
  return texts
