"""`python -m train.sample` on a tiny trained workdir: greedy output, the decoding flags, and clear
errors."""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tfjax.data.tokenizers.sentencepiece import SentencePieceTokenizer
from tfjax.inference import generation, load
from tfjax.models.gpt import GPT, GPTConfig
from tfjax.training import checkpoint

PROMPTS = ("The city of", "In 1066, the")
MAX_NEW = 8


def sample_command(workdir, *flags: str) -> list[str]:
  return [sys.executable, "-m", "train.sample", f"--workdir={workdir}", *flags]


def greedy_reference(workdir, prompt: str, max_new_tokens: int) -> str:
  """Argmax continuation from full forward passes over the whole prefix (no cache)."""
  with open(workdir / "config.json") as f:
    config = GPTConfig.from_config(json.load(f)["model"])
  tokenizer = SentencePieceTokenizer.load(workdir / "tokenizer.model")
  model = GPT(config)
  abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, config.max_len), int))
  params = checkpoint.restore_params(str(workdir), abstract["params"])
  forward = jax.jit(lambda tokens: model.apply({"params": params}, tokens))

  tokens = tokenizer.encode(prompt)
  ids = list(tokens)
  for _ in range(max_new_tokens):
    padded = np.zeros((1, config.max_len), np.int32)  # causal: what follows cannot matter
    padded[0, : len(ids)] = ids
    next_id = int(jnp.argmax(forward(padded)[0, len(ids) - 1]))
    if next_id == tokenizer.eos_id:
      break
    ids.append(next_id)
  return tokenizer.decode(ids)


def test_greedy_sampling_prints_each_prompt_and_its_argmax_continuation(trained_run, run_cli):
  flags = [f"--prompt={p}" for p in PROMPTS] + ["--temperature=0", f"--max_new_tokens={MAX_NEW}"]
  done = run_cli(sample_command(trained_run.workdir, *flags))
  assert done.returncode == 0, done.stderr[-3000:]
  expected = [greedy_reference(trained_run.workdir, p, MAX_NEW) for p in PROMPTS]
  assert done.stdout == "".join(f"{text}\n\n" for text in expected)
  for prompt, text in zip(PROMPTS, expected, strict=True):
    assert text.startswith(prompt) and len(text) > len(prompt)


@pytest.mark.parametrize(
  "flags",
  [["--prompt=The city of", "--max_new_tokens=40"], ["--prompt=" + "one two three " * 12]],
  ids=["too_many_new_tokens", "long_prompt"],
)
def test_more_positions_than_max_len_is_a_one_line_error(trained_run, run_cli, flags):
  done = run_cli(sample_command(trained_run.workdir, "--temperature=0", *flags))
  assert done.returncode != 0
  (line,) = done.stderr.strip().splitlines()  # no traceback
  assert line.startswith("error: ") and "more than the model's max_len=32; " in line
  assert "shorten the" in line or "ask for at most" in line


def test_a_workdir_without_config_json_is_a_clear_error(tmp_path, run_cli):
  done = run_cli(sample_command(tmp_path, "--prompt=The"))
  assert done.returncode != 0
  assert f"'{tmp_path}' has no config.json; give a tfjax language-model workdir" in done.stderr


def test_beam_search_repetition_and_stop_flags_print_what_the_python_api_gives(
  trained_run, run_cli
):
  """The decoding flags reach generation.complete_texts: the CLI prints its texts, and a stop
  string taken from inside the continuation cuts it there."""
  config, params, tokenizer = load.load(trained_run.workdir, "gpt")
  options = dict(
    max_new_tokens=MAX_NEW,
    beam_size=3,
    length_penalty=0.6,
    no_repeat_ngram_size=2,
    repetition_penalty=1.2,
  )
  full = generation.complete_texts(config, params, tokenizer, list(PROMPTS), **options)
  stop = full[0][len(PROMPTS[0]) :][2:4]  # two characters inside the first continuation
  expected = generation.complete_texts(
    config, params, tokenizer, list(PROMPTS), stop=[stop], **options
  )
  assert len(expected[0]) < len(full[0]) and expected[0].startswith(PROMPTS[0])
  flags = [f"--prompt={p}" for p in PROMPTS] + [f"--{k}={v}" for k, v in options.items()]
  done = run_cli(sample_command(trained_run.workdir, *flags, f"--stop={stop}"))
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout == "".join(f"{text}\n\n" for text in expected)


@pytest.mark.parametrize(
  "flags, message",
  [
    (["--beam_size=0"], "beam_size=0 must be an int >= 1 (1: no beam search)"),
    (["--beam_size=100000"], "beam_size=100000 is larger than the vocabulary (vocab_size="),
    (
      ["--beam_size=2", "--temperature=0.5"],
      "beam search (--beam_size=2) does not sample: drop --temperature or use --beam_size=1",
    ),
    (["--repetition_penalty=0"], "repetition_penalty=0.0 must be > 0 (1.0: off"),
  ],
  ids=["beam_0", "beam_above_vocab", "beam_with_temperature", "penalty_0"],
)
def test_bad_decoding_flags_are_one_line_errors(trained_run, run_cli, flags, message):
  done = run_cli(sample_command(trained_run.workdir, "--max_new_tokens=2", *flags))
  assert done.returncode != 0
  (line,) = done.stderr.strip().splitlines()  # no traceback
  assert line.startswith("error: ") and message in line, line
