"""Tests for tfjax.inference.generation: beam search on a GPT after prompts of different lengths,
against brute-force enumeration, against a step that recomputes the whole prefix without a
cache, and against greedy decoding; stop strings; bad input."""

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tfjax.inference import generation, repetition, sampling, search
from tfjax.models.gpt import GPT, GPTConfig
from tfjax.nn.stack import stack_layers

# A toy GPT small enough to enumerate every continuation: 5 tokens.
TOY = GPTConfig(
  vocab_size=5,
  max_len=10,
  num_layers=2,
  num_heads=2,
  d_model=8,
  d_ff=16,
  dropout_rate=0.0,
  attention_dropout_rate=0.0,
  init_std=0.5,  # far from flat: no near-ties between hypotheses
)
EOS = 2
PROMPTS = [[1, 3, 0], [4], [3, 0, 1, 4, 4]]  # different lengths: each example at its position


@functools.cache
def _params(config: GPTConfig):
  return GPT(config).init(jax.random.key(0), jnp.zeros((1, config.max_len), jnp.int32))["params"]


@functools.cache
def _forward(config: GPTConfig):
  model = GPT(config.replace(decode=False))
  return jax.jit(lambda params, tokens: model.apply({"params": params}, tokens))


def _penalty(length: int, alpha: float) -> float:
  return ((5.0 + length) / 6.0) ** alpha  # Wu et al. 2016, Eq. 14, written again here


def _log_probs_fn(prompt, process=None):
  """log p(. | prompt + prefix) [V] from a full forward pass without a cache, of the logits
  processed by `process` (given the whole sequence) if any; memoised per prefix."""
  params = _params(TOY)

  @functools.cache
  def log_probs(prefix: tuple) -> np.ndarray:
    sequence = list(prompt) + list(prefix)
    padded = np.zeros((1, TOY.max_len), np.int32)  # causal: the padding cannot matter
    padded[0, : len(sequence)] = sequence
    logits = _forward(TOY)(params, jnp.asarray(padded))[:, len(sequence) - 1]  # [1, V]
    if process is not None:
      logits = process(logits, jnp.asarray(padded), jnp.asarray([len(sequence)]))
    logits = np.asarray(logits[0], np.float64)
    return logits - logits.max() - np.log(np.sum(np.exp(logits - logits.max())))

  return log_probs


def _enumerate(prompt, max_new, eos_id, alpha, process=None):
  """Every complete continuation (EOS last, or max_new tokens), best score first."""
  log_probs = _log_probs_fn(prompt, process)
  hypotheses = []
  for length in range(1, max_new + 1):
    for new in itertools.product(range(TOY.vocab_size), repeat=length):
      if eos_id in new[:-1] or (new[-1] != eos_id and length < max_new):
        continue
      logp = sum(log_probs(new[:t])[new[t]] for t in range(length))
      if np.isfinite(logp):
        hypotheses.append((logp / _penalty(length, alpha), new))
  return sorted(hypotheses, key=lambda h: -h[0])


def _reference_beam(prompt, beam, max_new, eos_id, alpha, process=None):
  """Beam search by search.beam_search's (fairseq's) rules in plain Python over uncached
  log-probs: the best 2 * beam extensions; an ending one finishes only if among the best beam;
  the best beam others stay alive; done once beam have finished, or at max_new."""
  log_probs = _log_probs_fn(prompt, process)
  alive, finished = [(0.0, ())], []
  for step in range(1, max_new + 1):
    candidates = sorted(
      ((lp + log_probs(seq)[t], seq + (t,)) for lp, seq in alive for t in range(TOY.vocab_size)),
      key=lambda c: -c[0],
    )[: 2 * beam]
    ends = lambda seq: seq[-1] == eos_id or len(seq) == max_new  # noqa: E731
    new = [(lp / _penalty(len(q), alpha), q) for lp, q in candidates[:beam] if ends(q)]
    alive = [c for c in candidates if not ends(c[1])][:beam]
    finished = sorted(finished + [h for h in new if np.isfinite(h[0])], key=lambda h: -h[0])
    finished = finished[:beam]
    if len(finished) == beam or step == max_new:
      return finished


def _padded(prompts):
  lengths = np.array([len(p) for p in prompts])
  tokens = np.zeros((len(prompts), lengths.max()), np.int32)
  for i, p in enumerate(prompts):
    tokens[i, : len(p)] = p
  return jnp.asarray(tokens), jnp.asarray(lengths)


def _uncached_start(prompts, total_len, process=None):
  """(step_fn, cache, first_logits) of a step that recomputes the full forward pass over the whole
  prefix at every step; its "cache" is the token history, which beam search reorders by beam."""
  params, forward = _params(TOY), _forward(TOY)
  tokens, lengths = _padded(prompts)
  history = jnp.pad(tokens, ((0, 0), (0, total_len - tokens.shape[1])))

  def logits_at(history, positions):
    logits = forward(params, history)[jnp.arange(history.shape[0]), positions]
    return logits if process is None else process(logits, history, positions + 1)

  def step_fn(fed, positions, cache, context):
    history = cache.at[jnp.arange(fed.shape[0]), positions[:, 0]].set(fed[:, 0])
    return logits_at(history, positions[:, 0]), history

  return step_fn, history, logits_at(history, lengths - 1)


def _beam_from(step_fn, cache, first_logits, prompts, beam, max_new, eos_id, alpha):
  tokens, lengths = _padded(prompts)
  return search.beam_search(
    step_fn,
    cache,
    None,
    batch_size=len(prompts),
    beam_size=beam,
    max_len=max_new,
    bos_id=0,
    eos_id=-1 if eos_id is None else eos_id,
    alpha=alpha,
    last=tokens[jnp.arange(len(prompts)), lengths - 1],
    positions=lengths - 1,
    first_logits=first_logits,
  )


def _new_tokens(row, prompt_len, length):
  return tuple(np.asarray(row)[prompt_len:length].tolist())


@pytest.mark.parametrize("eos_id", [EOS, None], ids=["eos", "no_eos"])
def test_beam_search_on_a_gpt_at_full_breadth_equals_enumeration_with_and_without_cache(eos_id):
  """max_new 3, beam 25 = V**2: every prefix stays alive until the last step, which ranks all
  their extensions, so the beam holds exactly the 25 best continuations. The GPT's prefill and
  cached step (those beam_generate uses) and a step without a cache both find them. Beam 25 is
  above the vocabulary, which beam_generate refuses, so search.beam_search is called directly."""
  max_new, beam, alpha = 3, 25, 0.6
  total_len = max(map(len, PROMPTS)) + max_new
  tokens, lengths = _padded(PROMPTS)
  model = GPT(sampling.decoding_config(TOY))
  cached = (
    sampling.step_fn_of(model, _params(TOY)),
    *sampling.prefill(model, _params(TOY), tokens, lengths, total_len)[::-1],
  )
  uncached = _uncached_start(PROMPTS, total_len)
  results = []
  for step_fn, cache, first_logits in (cached, uncached):
    run = functools.partial(_beam_from, step_fn, prompts=PROMPTS, beam=beam, max_new=max_new)
    results.append(run(cache, first_logits, eos_id=eos_id, alpha=alpha))
  for b, prompt in enumerate(PROMPTS):
    expected = _enumerate(prompt, max_new, eos_id, alpha)[:beam]
    want = [list(q) + [0] * (max_new - len(q)) for _, q in expected]  # 0 after an EOS
    for sequences, scores in results:
      np.testing.assert_allclose(scores[b], [s for s, _ in expected], rtol=1e-5)
      np.testing.assert_array_equal(sequences[b], want)
  np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5)


@pytest.mark.parametrize(
  "options",
  [{}, dict(no_repeat_ngram_size=2, repetition_penalty=2.0)],
  ids=["plain", "repetition_control"],
)
def test_beam_generate_equals_enumeration_when_the_beam_holds_every_prefix(options):
  """max_new 2 and beam = V: every first token stays alive, and the last step ranks all of their
  extensions, so the beams are exactly the V best continuations (an EOS after one token
  included), each scored with the GNMT penalty over its new tokens; `best()` is the first."""
  max_new, alpha = 2, 0.6
  result = generation.beam_generate(
    TOY,
    _params(TOY),
    PROMPTS,
    beam_size=TOY.vocab_size,
    max_new_tokens=max_new,
    length_penalty=alpha,
    eos_id=EOS,
    pad_id=4,
    **options,
  )
  total_len = max(map(len, PROMPTS)) + max_new
  assert result.tokens.shape == (3, TOY.vocab_size, total_len)
  process = repetition.repetition_control(
    options.get("no_repeat_ngram_size", 0), options.get("repetition_penalty")
  )
  ended_by_eos, bests = [], []
  for b, prompt in enumerate(PROMPTS):
    expected = _enumerate(prompt, max_new, EOS, alpha, process)[: TOY.vocab_size]
    bests.append(list(expected[0][1]))
    np.testing.assert_allclose(result.scores[b], [s for s, _ in expected], rtol=1e-5)
    for k, (_, new) in enumerate(expected):
      row, length = np.asarray(result.tokens[b, k]), int(result.lengths[b, k])
      assert length == len(prompt) + len(new)
      assert row[: len(prompt)].tolist() == prompt
      assert _new_tokens(row, len(prompt), length) == new
      assert np.all(row[length:] == 4)  # pad_id after the end
      assert bool(result.finished[b, k]) == (new[-1] == EOS)
      ended_by_eos.append(new[-1] == EOS)
  assert any(ended_by_eos) and not all(ended_by_eos)
  best = result.best()
  np.testing.assert_array_equal(best.tokens, result.tokens[:, 0])
  assert sampling.generated_tokens(best) == [q[:-1] if q[-1] == EOS else q for q in bests]


@pytest.mark.parametrize(
  "options", [{}, dict(no_repeat_ngram_size=2, repetition_penalty=1.5)], ids=["plain", "repetition"]
)
def test_cached_beam_generate_equals_a_beam_search_recomputing_each_prefix(options):
  """A narrow beam (3 of 5) over 4 steps, its cache expanded to the beams and reordered by parent
  at every step, gives the hypotheses and scores of a plain-Python beam search with the same rules
  over full forward passes without a cache, on each beam's own history."""
  max_new, beam, alpha = 4, 3, 0.6
  result = generation.beam_generate(
    TOY, _params(TOY), PROMPTS, beam_size=beam, max_new_tokens=max_new, eos_id=EOS, **options
  )
  process = repetition.repetition_control(
    options.get("no_repeat_ngram_size", 0), options.get("repetition_penalty")
  )
  lengths_seen = set()
  for b, prompt in enumerate(PROMPTS):
    expected = _reference_beam(prompt, beam, max_new, EOS, alpha, process)
    np.testing.assert_allclose(result.scores[b], [s for s, _ in expected], rtol=1e-5)
    for k, (_, new) in enumerate(expected):
      assert _new_tokens(result.tokens[b, k], len(prompt), int(result.lengths[b, k])) == new
      lengths_seen.add(len(new))
  assert len(lengths_seen) > 1  # hypotheses end by EOS and at the limit


# A GPT with a larger vocabulary, for greedy and the layouts.
WIDE = TOY.replace(vocab_size=50, max_len=16, d_model=16, num_heads=4, d_ff=32)
WIDE_PROMPTS = [[3, 14, 15], [9, 26, 5, 35, 8, 9, 7], [2, 7, 18, 28, 1]]


@pytest.mark.parametrize(
  "options", [{}, dict(no_repeat_ngram_size=2)], ids=["plain", "no_repeat_ngram"]
)
def test_beam_size_one_is_greedy_decoding_after_prompts_of_different_lengths(options):
  params, new = _params(WIDE), 8
  plain = sampling.generate(WIDE, params, WIDE_PROMPTS, max_new_tokens=new, temperature=0)
  # EOS := row 0's fourth greedy token: row 0 ends there, the others (probably) run on.
  eos = sampling.generated_tokens(plain)[0][3]
  common = dict(max_new_tokens=new, eos_id=eos, pad_id=0, **options)
  greedy = sampling.generate(WIDE, params, WIDE_PROMPTS, temperature=0, **common)
  beam = generation.beam_generate(WIDE, params, WIDE_PROMPTS, beam_size=1, **common).best()
  np.testing.assert_array_equal(beam.tokens, greedy.tokens)
  np.testing.assert_array_equal(beam.lengths, greedy.lengths)
  np.testing.assert_array_equal(beam.finished, greedy.finished)
  assert np.any(greedy.finished) and not np.all(greedy.finished)


def test_beam_generate_with_scanned_layers_equals_unscanned():
  params, common = _params(WIDE), dict(beam_size=3, max_new_tokens=5, eos_id=7)
  loop = generation.beam_generate(WIDE, params, WIDE_PROMPTS, **common)
  scanned = generation.beam_generate(
    WIDE.replace(scan_layers=True), stack_layers(params, WIDE.num_layers), WIDE_PROMPTS, **common
  )
  np.testing.assert_array_equal(scanned.tokens, loop.tokens)
  np.testing.assert_allclose(scanned.scores, loop.scores, rtol=1e-5)


def test_beam_generate_rejects_bad_requests():
  params = _params(TOY)
  with pytest.raises(ValueError, match=r"beam_size=6 is larger than the vocabulary \(vocab_size="):
    generation.beam_generate(TOY, params, PROMPTS, beam_size=6, max_new_tokens=2)
  with pytest.raises(ValueError, match=r"beam_size=0 must be an int >= 1"):
    generation.beam_generate(TOY, params, PROMPTS, beam_size=0, max_new_tokens=2)
  with pytest.raises(ValueError, match=r"longest prompt \(5 tokens\).*max_len=10; shorten"):
    generation.beam_generate(TOY, params, PROMPTS, beam_size=2, max_new_tokens=6)
  with pytest.raises(ValueError, match="repetition_penalty=0.0 must be > 0"):
    generation.beam_generate(
      TOY, params, PROMPTS, beam_size=2, max_new_tokens=2, repetition_penalty=0.0
    )


# ----------------------------------------------------------------------------------------------
# Text in, text out: stop strings.
# ----------------------------------------------------------------------------------------------


class CharTokenizer:
  """One character per id of WIDE's 50 (as test_seq2seq's CharTokenizer): a stop string spans
  several tokens, and a token's text is known. Like GPT-2's, it has no pad token."""

  ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX"
  bos_id, eos_id, pad_id = None, None, None
  vocab_size = len(ALPHABET)

  def encode(self, text):
    return [self.ALPHABET.index(c) for c in text]

  def decode(self, ids):
    return "".join(self.ALPHABET[i] for i in ids)


def test_cut_at_stop_cuts_before_the_earliest_stop_after_start():
  assert generation.cut_at_stop("abcabc", ["c", "b"]) == "a"
  assert generation.cut_at_stop("abcabc", ["bc"], start=2) == "abca"
  assert generation.cut_at_stop("abc", ["x"]) == "abc"
  assert generation.cut_at_stop("abc", []) == "abc"


@pytest.mark.parametrize("beam_size", [1, 3])
def test_complete_texts_cuts_each_continuation_before_its_first_stop_string(beam_size):
  """The text is the prompt, then the continuation up to (not including) the earliest stop
  string found in it; a stop string inside the prompt does not count."""
  tokenizer, params = CharTokenizer(), _params(WIDE)
  prompts = [tokenizer.decode(p) for p in WIDE_PROMPTS]
  complete = functools.partial(
    generation.complete_texts,
    WIDE,
    params,
    tokenizer,
    prompts,
    max_new_tokens=8,
    temperature=0,
    beam_size=beam_size,
  )
  full = complete()
  continuations = [t[len(p) :] for t, p in zip(full, prompts, strict=True)]
  assert all(len(c) == 8 for c in continuations)
  stop = [continuations[0][3:5], continuations[1][1], prompts[2]]  # two tokens; one; the prompt
  cut = complete(stop=stop)
  for text, prompt, continuation in zip(cut, prompts, continuations, strict=True):
    found = [i for i in (continuation.find(s) for s in stop) if i >= 0]
    assert text == prompt + continuation[: min(found, default=8)]
  assert len(cut[0]) <= len(prompts[0]) + 3 and len(cut[1]) <= len(prompts[1]) + 1
  assert complete(stop=continuations[1][1]) == [  # one string is a list of one
    generation.cut_at_stop(t, [continuations[1][1]], len(p))
    for t, p in zip(full, prompts, strict=True)
  ]
  with pytest.raises(ValueError, match="must be non-empty strings"):
    complete(stop=["x", ""])


# --- a CLI's flags over a run's decoding -------------------------------------------------------

BEAM_RUN = generation.Decoding(beam_size=4, length_penalty=0.8, no_repeat_ngram_size=3)


@pytest.mark.parametrize(
  "run, given, expected",
  [
    (BEAM_RUN, {}, BEAM_RUN),
    (BEAM_RUN, {"beam_size": 2}, dataclasses.replace(BEAM_RUN, beam_size=2)),
    (
      BEAM_RUN,
      {"temperature": 0.7, "top_k": 5},
      dataclasses.replace(BEAM_RUN, beam_size=1, temperature=0.7, top_k=5),
    ),
    (generation.Decoding(), {"beam_size": 3}, generation.Decoding(beam_size=3)),
    (
      generation.Decoding(temperature=0.9),
      {"top_p": 0.5},
      generation.Decoding(temperature=0.9, top_p=0.5),
    ),
  ],
  ids=["nothing", "beam_size", "sampling_over_beam", "beam_over_greedy", "top_p_when_sampling"],
)
def test_given_fields_replace_the_run_s_and_sampling_ones_leave_beam_search(run, given, expected):
  assert run.overridden(given) == expected


@pytest.mark.parametrize("run", [generation.Decoding(), BEAM_RUN], ids=["greedy", "beam"])
def test_sampling_knobs_over_a_greedy_decoding_are_a_one_line_error(run):
  message = r"^top_k=5, seed=3 have no effect: this decoding is greedy \(temperature 0\); give"
  with pytest.raises(ValueError, match=message):
    run.overridden({"top_k": 5, "seed": 3})
  with pytest.raises(ValueError, match=r"^top_p=0.5 has no effect: this decoding is greedy"):
    run.overridden({"top_p": 0.5})
