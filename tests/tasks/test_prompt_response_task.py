"""Prompt -> response fine-tuning through the trainer: the loss on the response alone, packed
rows against padded ones, a run from a pre-trained GPT that resumes exactly and writes its test
responses, an instruction mixture scored task by task, and the one-line errors for inputs that
do not fit."""

import json
import logging
import pathlib
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sacrebleu
import tensorflow_datasets as tfds

from configs import gpt_tiny_instructions, gpt_tiny_summarize
from tests.conftest import apply_overrides
from tests.data.instruction_sets import SIZES, use_tiny_tasks
from tests.data.test_prompt_response import WordTokenizer
from tests.tasks.bert_runs import (
  KEY,
  Run,
  assert_trees_equal,
  pretrained_params,
  resumed_run,
  run_once,
)
from tests.tasks.lora_checks import bits, final_params, flat, fresh_params, saved_optimizer_paths
from tests.tasks.text_pair_sets import WORDS
from tests.tiny_datasets import tiny_builder
from tfjax.data import prompt_response as pr
from tfjax.hub import openai_gpt
from tfjax.inference import generation, sampling
from tfjax.models.gpt import GPT, GPTConfig
from tfjax.nn import lora
from tfjax.tasks import registry, text_metrics
from tfjax.tasks.prompt_response import (
  decode_responses,
  load_responder,
  response_loss_fn,
  score_responses,
  score_tasks,
)

# --- a tiny dataset: the response is the prompt's last two words, reversed ---------------------


def _pairs(n: int, seed: int, extra: tuple = ()) -> list[dict]:
  rng = np.random.default_rng(seed)
  prompts = [" ".join(rng.choice(WORDS, rng.integers(2, 8))) for _ in range(n)]
  pairs = [{"prompt": p, "response": " ".join(p.split()[-1:-3:-1])} for p in prompts]
  return pairs + list(extra)


LONG = {"prompt": " ".join(WORDS * 4), "response": "the river"}  # cut from its start
EMPTY = {"prompt": "the city", "response": ""}  # dropped
tiny_builder(
  "tiny_prompts",
  {"prompt": tfds.features.Text(), "response": tfds.features.Text()},
  {"train": _pairs(24, 0, (LONG, EMPTY)), "validation": _pairs(8, 1), "test": _pairs(6, 2)},
)
PROMPTS = {
  "data.name": "tiny_prompts",
  "data.prompt_field": "prompt",
  "data.response_field": "response",
  "data.train_split": "train",
  "data.eval_split": "validation",
  "data.test_split": "test",
  "data.max_seq_len": 32,
  "decode.max_new_tokens": 8,
  "decode.batch_size": 4,
  "train.batch_size": 4,
  "train.num_steps": 3,
  "train.warmup_steps": 1,
  "train.log_every": 1,
  "train.eval_every": 1000,
  "train.checkpoint_every": 3,
  "model.dropout_rate": 0.1,  # a resumed run must restore the rng as well as the data
}

# --- the loss, on hand-built rows --------------------------------------------------------------

# init_std 0.5: attention far from uniform, so an example that saw its row's others would show.
MODEL = GPTConfig(vocab_size=21, max_len=12, num_layers=1, num_heads=2, d_model=8, d_ff=16,
                  init_std=0.5)  # fmt: skip
SEP, EOS = 20, 3


def _examples(n: int, seed: int) -> pr.EncodedPairs:
  """`n` random `prompt <sep> response <eos>` sequences of 2 to 11 inputs."""
  rng = np.random.default_rng(seed)
  sequences, separators = [], []
  for _ in range(n):
    prompt = list(rng.integers(4, 20, rng.integers(0, 6)))
    response = list(rng.integers(4, 20, rng.integers(1, 6)))
    sequences.append(np.array([*prompt, SEP, *response, EOS], np.int32))
    separators.append(len(prompt))
  return pr.EncodedPairs(sequences, separators, 0, 0)


_LOSS_FN = jax.jit(response_loss_fn(GPT(MODEL)), static_argnums=3)


def _loss(params, rows):
  loss, aux = _LOSS_FN(params, rows, None, True)
  return float(loss), float(aux["num_tokens"])


@pytest.fixture(scope="module")
def params():
  return jax.jit(GPT(MODEL).init)(KEY, jnp.zeros((1, 12), jnp.int32))["params"]


def test_changing_a_prompt_label_changes_nothing_and_a_response_label_does(params):
  rows = pr.pack(_examples(5, 0), 12, packing=True)
  loss, num_tokens = _loss(params, rows)
  assert num_tokens == rows["weights"].sum() > 0
  changed = {"prompt": 0, "response": 0}
  for r, j in zip(*np.nonzero(rows["segment_ids"]), strict=True):
    other = {k: v.copy() for k, v in rows.items()}
    other["targets"][r, j] = (rows["targets"][r, j] + 1) % MODEL.vocab_size
    kind = "response" if rows["weights"][r, j] else "prompt"
    if kind == "prompt":
      assert _loss(params, other)[0] == loss, (r, j)
    else:
      assert _loss(params, other)[0] != loss, (r, j)
    changed[kind] += 1
  assert changed["prompt"] > 0 and changed["response"] > 0


def test_packed_and_padded_rows_give_the_same_loss_on_the_same_examples(params):
  examples = _examples(9, 1)
  packed = pr.pack(examples, 12, packing=True)
  padded = pr.pack(examples, 12, packing=False)
  assert len(packed["inputs"]) < len(padded["inputs"]) == 9  # packing did share rows
  packed_loss, packed_tokens = _loss(params, packed)
  padded_loss, padded_tokens = _loss(params, padded)
  assert packed_tokens == padded_tokens
  np.testing.assert_allclose(packed_loss * packed_tokens, padded_loss * padded_tokens, rtol=1e-5)
  np.testing.assert_allclose(packed_loss, padded_loss, rtol=1e-5)
  # One segment per row (attention across the examples of a row): the test can fail.
  leaky = {**packed, "segment_ids": (packed["segment_ids"] > 0).astype(np.int32)}
  assert abs(_loss(params, leaky)[0] - packed_loss) > 1e-3


@pytest.mark.parametrize("beam_size", [1, 3])
def test_batched_responses_equal_each_prompt_decoded_alone(beam_size):
  """Greedy and beam responses, in padded batches of 2, after a 2-token suffix: each equals
  its prompt (cut to the room left) decoded alone by sampling.generate / beam_generate."""
  model = MODEL.replace(init_std=2.0)  # outputs that depend on the prompt
  params = GPT(model).init(KEY, jnp.zeros((1, 12), jnp.int32))["params"]
  tokenizer = WordTokenizer("a b c d e f g h i j".split())  # ids 4..13; 14..19 are no text
  prompts = ["a b c", "d e f g h i j a b c d", "e"]  # the second is cut to its last 6 tokens
  suffix = [SEP, 5]  # 8 positions for the prompt and the suffix, 4 for the response
  decoding = generation.Decoding(beam_size=beam_size)
  sizes = dict(max_seq_len=12, max_new_tokens=4, batch_size=2)  # 3 prompts: a padded 2nd batch
  decode = lambda **kw: decode_responses(
    model, params, tokenizer, prompts, suffix=suffix, eos_id=3, decoding=decoding, **sizes, **kw
  )
  expected = []
  for prompt in prompts:
    kept = tokenizer.encode(prompt)[-6:] + suffix
    if beam_size == 1:
      result = sampling.generate(model, params, [kept], max_new_tokens=4, temperature=0.0, eos_id=3)
    else:
      result = generation.beam_generate(
        model, params, [kept], beam_size=beam_size, max_new_tokens=4, eos_id=3
      ).best()
    new = sampling.generated_tokens(result)[0]
    expected.append(tokenizer.decode([t for t in new if t < tokenizer.vocab_size]))
  got = decode()
  assert got == expected and len(set(got)) == 3
  if beam_size == 1:
    kept_beginning = decode(cut_from="end")  # the cut prompt's first 6 tokens instead
    assert kept_beginning[0::2] == got[0::2] and kept_beginning[1] != got[1]


def test_beam_responses_differ_from_greedy_on_a_random_model():
  """The strategy reaches the decoding: beam 3 and greedy disagree somewhere (a random model's
  greedy path is rarely its best 4-token hypothesis)."""
  model = MODEL.replace(init_std=2.0)
  params = GPT(model).init(KEY, jnp.zeros((1, 12), jnp.int32))["params"]
  tokenizer = WordTokenizer("a b c d e f g h i j".split())
  prompts = [" ".join("abcdefghij"[i : i + 3]) for i in range(8)]
  decode = lambda beam: decode_responses(
    model, params, tokenizer, prompts, suffix=[SEP], eos_id=None, max_seq_len=12,
    max_new_tokens=4, batch_size=8, decoding=generation.Decoding(beam_size=beam),
  )  # fmt: skip
  assert decode(1) != decode(3)


# --- runs through the trainer -----------------------------------------------------------------


def prompt_config(gpt_pretrained: Run, **overrides):
  values = {
    **PROMPTS,
    "data.tfds_data_dir": gpt_pretrained.config.data.tfds_data_dir,
    "init.checkpoint": str(gpt_pretrained.workdir),
  }
  return apply_overrides(gpt_tiny_summarize.get_config(), {**values, **overrides})


@pytest.fixture(scope="module")
def prompt_run(tmp_path_factory, gpt_pretrained) -> Run:
  workdir = tmp_path_factory.mktemp("prompt_response") / "workdir"
  return run_once(prompt_config(gpt_pretrained), workdir)


def test_the_start_is_the_pretrained_lm_with_the_separator_appended(gpt_pretrained, caplog):
  task = registry.make_task(prompt_config(gpt_pretrained))
  with caplog.at_level(logging.WARNING):
    task.prepare_data("/nonexistent-prompt-response-workdir", 0, 1)
  assert "Dropped 1 of 26 pairs of split 'train' of dataset 'tiny_prompts' with an empty" in (
    caplog.text
  )
  assert "Cut the prompts of 1 of 25 pairs of split 'train'" in caplog.text
  lm = pretrained_params(gpt_pretrained)
  vocab = lm["token_embed"]["embedding"].shape[0]
  assert (task.tokens.separator, task.tokens.eos) == (vocab, task.tokenizer.eos_id)
  initial = task.initial_params(jax.jit(task.init_params)(KEY))
  table = initial["token_embed"]["embedding"]
  assert table.shape[0] == vocab + 1  # the separator; EOS is the tokenizer's
  np.testing.assert_array_equal(table[:vocab], lm["token_embed"]["embedding"])
  assert_trees_equal({k: v for k, v in initial.items() if k != "token_embed"},
                     {k: v for k, v in lm.items() if k != "token_embed"})  # fmt: skip


def test_packed_and_padded_pipelines_give_the_same_eval_loss(gpt_pretrained):
  losses = []
  for packing in (True, False):
    task = registry.make_task(prompt_config(gpt_pretrained, **{"data.packing": packing}))
    data = task.prepare_data("/nonexistent-prompt-response-workdir", 0, 1)
    params = task.initial_params(jax.jit(task.init_params)(KEY))
    loss_fn = jax.jit(task.loss_fn(task.model()), static_argnums=3)
    results = [loss_fn(params, batch, None, True) for batch in data.eval_batches]
    tokens = sum(float(aux["num_tokens"]) for _, aux in results)
    total = sum(float(loss) * float(aux["num_tokens"]) for loss, aux in results)
    losses.append((len(task._data.eval["inputs"]), tokens, total))
  (packed_rows, packed_tokens, packed_sum), (padded_rows, padded_tokens, padded_sum) = losses
  assert packed_rows < padded_rows == 8 and packed_tokens == padded_tokens
  np.testing.assert_allclose(packed_sum, padded_sum, rtol=1e-5)


def test_a_run_trains_on_the_responses_and_writes_its_test_responses(prompt_run):
  workdir, final = prompt_run.workdir, prompt_run.final
  assert final["step"] == 3 and np.isfinite(final["eval_loss"])
  assert final["eval_perplexity"] == pytest.approx(np.exp(final["eval_loss"]))
  assert 0.0 <= final["eval_accuracy"] <= 1.0
  records = [json.loads(line) for line in (workdir / "responses.jsonl").read_text().splitlines()]
  config = prompt_run.config.data
  test = tfds.data_source("tiny_prompts", split="test", data_dir=config.tfds_data_dir)
  assert final["test_num_responses"] == len(records) == len(test) == 6
  assert [r["index"] for r in records] == list(range(6))
  assert [r["reference"] for r in records] == [e["response"].decode() for e in test]
  assert (workdir / "added_tokens.json").is_file()
  assert all(isinstance(r["generated"], str) for r in records)
  assert (
    final["test_exact_match"]
    == score_responses([r["generated"] for r in records], [r["reference"] for r in records])[
      "exact_match"
    ]
  )


def responses_of(workdir: pathlib.Path) -> list[str]:
  """What a run's end decoded from its test prompts, in order."""
  lines = (workdir / "responses.jsonl").read_text().splitlines()
  return [json.loads(line)["generated"] for line in lines]


def prompts_of(run: Run) -> list[str]:
  test = tfds.data_source("tiny_prompts", split="test", data_dir=run.config.data.tfds_data_dir)
  return [e["prompt"].decode() for e in test]


def test_the_workdir_answers_new_prompts_as_its_run_answered_the_test_split(
  gpt_pretrained, prompt_run, run_cli
):
  """load_responder reads the latest checkpoint with the added separator row, the tokenizer and
  the run's decode settings: its responses to the test prompts are those the run wrote; so are
  train.sample's (prompt, then "  -> " and the response)."""
  responder = load_responder(str(prompt_run.workdir))
  vocab = pretrained_params(gpt_pretrained)["token_embed"]["embedding"].shape[0]
  assert responder.separator == vocab == responder.config.vocab_size - 1  # EOS: the tokenizer's
  jax.tree.map(np.testing.assert_array_equal, responder.params, final_params(prompt_run))
  prompts, expected = prompts_of(prompt_run), responses_of(prompt_run.workdir)
  assert responder.respond(prompts) == expected
  argv = [sys.executable, "-m", "train.sample", f"--workdir={prompt_run.workdir}"]
  done = run_cli(argv + [f"--prompt={p}" for p in prompts[:2]])
  assert done.returncode == 0, done.stderr[-3000:]
  printed = zip(prompts[:2], expected[:2], strict=True)
  assert done.stdout == "".join(f"{p}\n  -> {r}\n\n" for p, r in printed)


def test_a_separator_the_workdir_did_not_add_is_a_one_line_error(tmp_path, prompt_run):
  workdir = tmp_path / "edited"
  shutil.copytree(prompt_run.workdir, workdir)
  saved = json.loads((workdir / "config.json").read_text())
  saved["data"]["separator"] = "<tl;dr>"
  (workdir / "config.json").write_text(json.dumps(saved))
  message = r"names the separator '<tl;dr>' but its added_tokens.json adds \['<summarize>'\]: "
  with pytest.raises(ValueError, match=message):
    load_responder(str(workdir))


def test_resumed_run_with_dropout_gives_the_uninterrupted_losses(
  tmp_path, gpt_pretrained, prompt_run, caplog
):
  workdir = tmp_path / "resumed"
  resumed_run(lambda **o: prompt_config(gpt_pretrained, **o), prompt_run, workdir, caplog)
  assert (workdir / "responses.jsonl").read_text() == (
    prompt_run.workdir / "responses.jsonl"
  ).read_text()


def test_lora_trains_only_the_adapters_of_the_whole_lm(tmp_path, gpt_pretrained):
  """With config.lora the whole LM is the frozen base (there is no head): every one of its
  leaves, the added separator row included, ends bit for bit as it started; the adapters move
  and are all the optimizer keeps moments of."""
  config = prompt_config(gpt_pretrained, **{"lora.rank": 4, "lora.alpha": 8.0})
  run = run_once(config, tmp_path / "lora")
  task = registry.make_task(config)
  task.prepare_data(str(run.workdir), 0, 1)
  start = flat(task.initial_params(lora.base_params(fresh_params(run))))
  final, fresh = flat(final_params(run)), flat(fresh_params(run))
  adapters = sorted(k for k in final if k.endswith(lora.ADAPTERS))
  assert adapters and sorted(set(final) - set(start)) == adapters
  for path, value in start.items():
    np.testing.assert_array_equal(bits(final[path]), bits(value), err_msg=path)
  assert all(np.abs(np.asarray(final[k]) - np.asarray(fresh[k])).max() > 1e-6 for k in adapters)
  moments = saved_optimizer_paths(run, run.final["step"])
  assert len(moments) == 2 * len(adapters) and all(m.endswith(lora.ADAPTERS) for m in moments)
  # The workdir loads as the merged model (lora.merge is tested against the adapted one): every
  # adapted kernel moved off the base, and it answers as the run did.
  responder = load_responder(str(run.workdir))
  merged = flat(lora.merge(final_params(run), lora.LoRA(4, 8.0, False)))
  loaded = flat(responder.params)
  assert sorted(loaded) == sorted(merged) == sorted(start)
  for path in merged:
    np.testing.assert_array_equal(bits(loaded[path]), bits(merged[path]), err_msg=path)
  kernels = {k.rsplit("/", 1)[0] for k in adapters}  # the adapted projections
  assert kernels and all(np.any(loaded[f"{k}/kernel"] != start[f"{k}/kernel"]) for k in kernels)
  assert responder.respond(prompts_of(run)) == responses_of(run.workdir)


def test_an_hf_gpt1_without_eos_gets_one_added_beside_the_separator(tmp_path):
  """An HF OpenAI GPT directory (our export, with the GPT-1 tokenizer golden's vocab.json +
  merges.txt, which has no EOS): the run adds <summarize> and <eos> and stops responses at it."""
  golden = pathlib.Path(__file__).resolve().parents[1] / "golden"
  hf_config = json.loads((golden / "openai_gpt_tiny" / "config.json").read_text())
  config = openai_gpt.openai_gpt_config_from_hf({**hf_config, "vocab_size": 300})
  params = GPT(config).init(KEY, jnp.zeros((1, 4), jnp.int32))["params"]
  hf_dir = tmp_path / "hf_gpt1"
  openai_gpt.save_openai_gpt(hf_dir, config, params)
  for name in ("vocab.json", "merges.txt"):
    shutil.copy(golden / "openai_gpt_tokenizer" / name, hf_dir / name)
  overrides = {"init.checkpoint": str(hf_dir), "data.max_seq_len": config.max_len,
               "decode.max_new_tokens": 4, "train.num_steps": 2, "train.checkpoint_every": 2,
               "data.tfds_data_dir": str(tmp_path / "tfds")}  # fmt: skip
  workdir = tmp_path / "w"
  run = apply_overrides(gpt_tiny_summarize.get_config(), {**PROMPTS, **overrides})
  final = registry.train(run, str(workdir))
  added = json.loads((workdir / "added_tokens.json").read_text())
  assert added == {"<summarize>": 300, "<eos>": 301, "eos_id": 301}
  assert final["test_num_responses"] == 6 and np.isfinite(final["eval_loss"])
  responder = load_responder(str(workdir))
  assert (responder.config.vocab_size, responder.separator, responder.eos_id) == (302, 300, 301)


# --- an instruction mixture -------------------------------------------------------------------


def test_each_task_is_scored_alone_with_its_metric():
  tasks = ["sum", "cls", "de", "sum", "cls", "de", "cls"]
  hypotheses = ["the old river", "Positive.", "der alte fluss", "a city", " NEGATIVE ",
                "die stadt am fluss", "pos-itive"]  # fmt: skip
  references = ["the river", "positive", "der alte fluss", "old stone city", "negative",
                "die alte stadt", "positive"]  # fmt: skip
  metrics = {"sum": "rouge", "cls": "exact_match", "de": "bleu"}
  got = score_tasks(tasks, hypotheses, references, metrics)
  assert list(got) == ["sum", "cls", "de"]
  assert got["sum"] == text_metrics.rouge(
    ["the old river", "a city"], ["the river", "old stone city"]
  )
  # Case, whitespace and end punctuation do not count; inner punctuation does: 2 of 3.
  assert got["cls"] == {"exact_match": pytest.approx(200 / 3)}
  expected = sacrebleu.corpus_bleu(["der alte fluss", "die stadt am fluss"],
                                   [["der alte fluss", "die alte stadt"]]).score  # fmt: skip
  assert got["de"] == {"bleu": pytest.approx(expected)} and 0 < expected < 100


TINY_MIXTURE = "tiny_summarise,tiny_sentiment,tiny_translate"


def mixture_config(gpt_pretrained: Run, **overrides):
  values = {
    **{k: v for k, v in PROMPTS.items() if not k.startswith("data.")},
    "data.tasks": TINY_MIXTURE,
    "data.max_train_per_task": 6,
    "data.max_seq_len": 32,
    "decode.num_test": 3,  # per task
    "train.num_steps": 2,
    "train.checkpoint_every": 2,
    "data.tfds_data_dir": gpt_pretrained.config.data.tfds_data_dir,
    "init.checkpoint": str(gpt_pretrained.workdir),
  }
  return apply_overrides(gpt_tiny_instructions.get_config(), {**values, **overrides})


@pytest.fixture(scope="module")
def mixture_run(tmp_path_factory, gpt_pretrained) -> Run:
  workdir = tmp_path_factory.mktemp("instructions") / "workdir"
  with use_tiny_tasks():
    return run_once(mixture_config(gpt_pretrained), workdir)


def test_a_mixture_run_scores_each_task_s_test_responses_with_its_metric(mixture_run):
  final, workdir = mixture_run.final, mixture_run.workdir
  assert final["step"] == 2 and np.isfinite(final["eval_loss"])
  records = [json.loads(line) for line in (workdir / "responses.jsonl").read_text().splitlines()]
  tasks = [r["task"] for r in records]
  assert tasks == ["tiny_summarise"] * 3 + ["tiny_sentiment"] * 3 + ["tiny_translate"] * 3
  assert final["test_num_responses"] == 9 and 3 < SIZES["test"]  # decode.num_test per task
  source = tfds.data_source("tiny_reviews", split="test",
                            data_dir=mixture_run.config.data.tfds_data_dir)  # fmt: skip
  word = {0: "negative", 1: "positive"}  # rotten, fresh
  for record in records[3:6]:
    assert record["reference"] == word[int(source[record["index"]]["label"])]
  metrics = {"tiny_summarise": "rouge", "tiny_sentiment": "exact_match", "tiny_translate": "bleu"}
  expected = score_tasks(tasks, [r["generated"] for r in records],
                         [r["reference"] for r in records], metrics)  # fmt: skip
  names = {f"test_{task}_{k}": v for task, scores in expected.items() for k, v in scores.items()}
  assert sorted(names) == [
    "test_tiny_sentiment_exact_match",
    "test_tiny_summarise_rouge1",
    "test_tiny_summarise_rouge2",
    "test_tiny_summarise_rougeL",
    "test_tiny_translate_bleu",
  ]
  assert {k: final[k] for k in names} == names
  assert final["test_tiny_sentiment_num_responses"] == 3
  assert "test_exact_match" not in final  # no score over the tasks pooled


# --- bad input: one line each, before training ------------------------------------------------


@pytest.mark.parametrize(
  "overrides, message",
  [
    ({"data.tasks": "tiny_sentiment,poetry"}, r"data.tasks names unknown tasks \['poetry'\]"),
    ({"data.max_train_per_task": 0}, r"data.max_train_per_task=0 keeps no training pair"),
  ],
  ids=["unknown_task", "cap"],
)
def test_a_bad_mixture_is_a_one_line_error_before_training(
  tmp_path, gpt_pretrained, overrides, message
):
  with use_tiny_tasks(), pytest.raises(ValueError, match=message) as caught:
    registry.train(mixture_config(gpt_pretrained, **overrides), str(tmp_path / "w"))
  assert "\n" not in str(caught.value)
  assert not (tmp_path / "w" / "checkpoints").exists()


@pytest.mark.parametrize(
  "overrides, message",
  [
    (
      {"data.skip_empty": False},
      r"example \d+ of split 'train' of dataset 'tiny_prompts' has an empty response \(feature "
      r"'response'\); set data.skip_empty=True to drop such pairs",
    ),
    ({"data.separator": "the"}, r"data.separator='the' is already a piece of the tokenizer's"),
    ({"data.separator": ""}, r"data.separator is empty; name the separator token"),
    ({"data.max_seq_len": 1}, r"data.max_seq_len=1 leaves no room for the separator and one"),
    ({"decode.max_new_tokens": 31}, r"decode.max_new_tokens=31 must be in \[1, data.max_seq_len"),
    (
      {"data.truncate": False},
      r"pair \d+ of split 'train' of dataset 'tiny_prompts' needs \d+ inputs \(prompt, separator, "
      r"response\), more than data.max_seq_len=32",
    ),
  ],
  ids=["empty_response", "separator_clash", "no_separator", "max_seq_len", "max_new", "too_long"],
)
def test_inputs_that_do_not_fit_are_one_line_errors(tmp_path, gpt_pretrained, overrides, message):
  with pytest.raises(ValueError, match=message) as caught:
    registry.train(prompt_config(gpt_pretrained, **overrides), str(tmp_path / "w"))
  assert "\n" not in str(caught.value)
  assert not (tmp_path / "w" / "checkpoints").exists()
