"""Prompt -> response fine-tuning of a GPT: `prompt <sep> response <eos>`, learned on the
response alone (summaries: `article <summarize> summary <eos>`; GPT-2 §3.6 prompts with
"TL;DR:" zero-shot, this fine-tunes an added separator token instead).

The separator (and EOS for a tokenizer without one) are embeddings appended after the
pre-trained vocabulary (`gpt.add_tokens`); rows hold packed examples or one each
(`tfjax.data.prompt_response`). The loss is the mean next-token cross-entropy over the response
tokens and EOS; metrics: that loss, its perplexity and the token accuracy. At the end the test
split's responses are decoded (greedy by default; config.decode sets beam search, sampling and
repetition control: `generation.Decoding`), up to EOS, written to `responses.jsonl` and scored
by `score_responses`.

An instruction mixture (`data.name = "instructions"`, `data.tasks`, `data.max_train_per_task`:
`tfjax.data.instructions`) trains on several tasks' prompts at once; its test responses are
scored task by task, each with its metric (`score_tasks`): `test_<task>_<metric>`.
"""

import json
import math
import os
import pathlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from absl import logging

from tfjax.data import instructions, pipeline, seq2seq
from tfjax.data import prompt_response as data_lib
from tfjax.data.text_pairs import TextPairs
from tfjax.data.tokenizers.base import Tokenizer
from tfjax.inference import generation, load, sampling
from tfjax.models import gpt
from tfjax.models.gpt import GPT, PARAM_AXES, GPTConfig
from tfjax.tasks import text_metrics
from tfjax.tasks.fine_tuning import FineTuningTask
from tfjax.tasks.gpt_fine_tuning import GPTFineTuningTask
from tfjax.tasks.lm import gpt_flops_per_token
from tfjax.training import sharding
from tfjax.training.step import LossFn, accuracy, cross_entropy_loss, dropout_rngs
from tfjax.training.task import TaskData, write_output

GREEDY = generation.Decoding()  # temperature 0, beam 1
RESPONSES_FILE = "responses.jsonl"


def response_loss_fn(model: GPT) -> LossFn:
  """Mean next-token cross-entropy over the weighted targets (the response tokens and EOS) of
  rows {"inputs", "targets", "weights", "segment_ids", "positions"} [b, t]; aux: token accuracy
  and the count of response tokens (what accumulation and devices weigh by)."""

  def loss_fn(
    params: Any, batch: dict, dropout_rng: jax.Array | None, deterministic: bool
  ) -> tuple[jax.Array, dict]:
    logits = model.apply(
      {"params": params},
      batch["inputs"],
      positions=batch["positions"],
      segment_ids=batch["segment_ids"],
      deterministic=deterministic,
      rngs=dropout_rngs(dropout_rng, deterministic),
    )  # [b, t, V]
    loss, num_tokens = cross_entropy_loss(logits, batch["targets"], batch["weights"])
    aux = {"accuracy": accuracy(logits, batch["targets"], batch["weights"])}
    return loss, {**aux, "num_tokens": num_tokens}

  return loss_fn


def score_responses(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
  """ROUGE-1/2/L (mean per-example F1, x100, stemmed) and the exact-match percentage of
  generated responses against their references (`tfjax.tasks.text_metrics`)."""
  return {
    **text_metrics.rouge(hypotheses, references),
    "exact_match": text_metrics.exact_match(hypotheses, references),
  }


def score_metric(metric: str, hypotheses: list[str], references: list[str]) -> dict[str, float]:
  """The scores `metric` (one of `instructions.METRICS`) names: "rouge": ROUGE-1/2/L (mean
  per-example F1, x100); "exact_match": the percentage equal to their reference once both are
  lowercased and stripped of punctuation at the ends (`text_metrics.short_answer`); "bleu":
  sacrebleu's corpus BLEU (13a, mixed case)."""
  if metric == "rouge":
    return text_metrics.rouge(hypotheses, references)
  if metric == "exact_match":
    return {metric: text_metrics.exact_match(hypotheses, references, text_metrics.short_answer)}
  if metric == "bleu":
    return {metric: float(text_metrics.bleu(hypotheses, references)[0].score)}
  raise ValueError(f"metric={metric!r} is unknown; choose one of {instructions.METRICS}")


def score_tasks(
  tasks: Sequence[str],
  hypotheses: Sequence[str],
  references: Sequence[str],
  metrics: dict[str, str],
) -> dict[str, dict[str, float]]:
  """{task: its scores}: the responses of each task of `tasks` (one name per response) against
  their references, with the metric `metrics[task]` names (`score_metric`)."""
  groups = by_task(tasks, hypotheses, references)
  return {task: score_metric(metrics[task], *pair) for task, pair in groups.items()}


def by_task(
  tasks: Sequence[str], hypotheses: Sequence[str], references: Sequence[str]
) -> dict[str, tuple[list[str], list[str]]]:
  """{task: (its hypotheses, its references)}, tasks in first-seen order."""
  groups: dict[str, tuple[list[str], list[str]]] = {}
  for task, hypothesis, reference in zip(tasks, hypotheses, references, strict=True):
    groups.setdefault(task, ([], []))
    groups[task][0].append(hypothesis)
    groups[task][1].append(reference)
  return groups


def decode_responses(
  config: GPTConfig,
  params: Any,
  tokenizer: Tokenizer,
  prompts: Sequence[str],
  *,
  suffix: Sequence[int],
  eos_id: int | None,
  max_seq_len: int,
  max_new_tokens: int,
  batch_size: int,
  cut_from: str = "start",
  decoding: generation.Decoding = GREEDY,
) -> list[str]:
  """The responses of `config`'s GPT to `prompts`, up to `eos_id` or `max_new_tokens`, by
  `decoding`'s strategy (greedy by default): each prompt cut (from its start, or end) to leave
  `max_new_tokens` of the `max_seq_len` positions, then followed by the `suffix` ids (a
  fine-tuned model's [<sep>]; GPT-2's zero-shot "TL;DR:"). Batches of `batch_size` rows of one
  shape: one compilation; batch k samples with fold_in(key(decoding.seed), k)."""
  prompt_len = max_seq_len - max_new_tokens  # the prompt and the suffix
  room = prompt_len - len(suffix)
  if room < 1:
    raise ValueError(
      f"max_seq_len={max_seq_len} leaves no room for a prompt beside max_new_tokens="
      f"{max_new_tokens} and a {len(suffix)}-token suffix; lower max_new_tokens"
    )
  pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
  ids = pipeline.encode_in_chunks(tokenizer.encode_batch, prompts)
  rows = np.full((len(ids), prompt_len), pad_id, np.int32)
  lengths = np.zeros(len(ids), np.int32)
  for i, prompt in enumerate(ids):
    kept = [*data_lib.keep_prompt(prompt, room, cut_from), *suffix]
    rows[i, : len(kept)], lengths[i] = kept, len(kept)
  num_cut = sum(len(p) > room for p in ids)
  if num_cut:
    logging.warning(
      "Cut %d of %d prompts from their %s to %d tokens, leaving %d for the response",
      num_cut,
      len(ids),
      cut_from,
      room,
      max_new_tokens,
    )
  responses = []
  for start in range(0, len(ids), batch_size):
    index = np.arange(start, start + batch_size)
    real = index < len(ids)
    index = np.where(real, index, 0)  # the last batch filled with copies of prompt 0
    result = generation.decode(
      config,
      params,
      rows[index],
      lengths[index],
      decoding=decoding,
      max_new_tokens=max_new_tokens,
      eos_id=eos_id,
      pad_id=pad_id,
      rng=jax.random.fold_in(jax.random.key(decoding.seed), start // batch_size),
    )
    for new, keep in zip(sampling.generated_tokens(result), real, strict=True):
      if keep:  # the added tokens (and a padded table's ids) are no text of the tokenizer's
        responses.append(tokenizer.decode([t for t in new if t < tokenizer.vocab_size]))
  return responses


class Responder(NamedTuple):
  """A prompt -> response workdir ready to answer (`load_responder`): its GPT with the added
  tokens, the ids it was trained with, and the run's config.data and config.decode settings."""

  config: GPTConfig
  params: Any
  tokenizer: Tokenizer
  separator: int
  eos_id: int
  max_seq_len: int
  cut_from: str
  decode: dict[str, Any]  # the run's config.decode: max_new_tokens, batch_size, Decoding's

  def respond(
    self,
    prompts: Sequence[str],
    *,
    decoding: generation.Decoding | None = None,
    max_new_tokens: int | None = None,
  ) -> list[str]:
    """The responses to `prompts`, decoded as the run decoded its test split (the same
    batches: sampled responses too) unless told otherwise (`decoding`, `max_new_tokens`)."""
    if not prompts:
      raise ValueError("no prompts to respond to; give at least one")
    return decode_responses(
      self.config,
      self.params,
      self.tokenizer,
      prompts,
      suffix=[self.separator],
      eos_id=self.eos_id,
      max_seq_len=self.max_seq_len,
      max_new_tokens=self.decode["max_new_tokens"] if max_new_tokens is None else max_new_tokens,
      batch_size=self.decode["batch_size"],
      cut_from=self.cut_from,
      decoding=generation.Decoding.from_config(self.decode) if decoding is None else decoding,
    )


def load_responder(workdir: str) -> Responder:
  """The latest checkpoint of a prompt_response `workdir` (LoRA adapters merged), its tokenizer,
  separator, EOS and the settings its config.json records."""
  config, params, tokenizer = load.load(workdir, "prompt_response")
  added = load.added_tokens(workdir)
  saved = json.loads((pathlib.Path(workdir) / load.CONFIG_FILE).read_text())  # the run's
  data = saved["data"]
  if data["separator"] not in added:
    names = sorted(k for k in added if k != "eos_id")
    raise ValueError(
      f"{workdir}'s config.json names the separator {data['separator']!r} but its "
      f"{load.ADDED_TOKENS_FILE} adds {names}: the two files are of different runs; restore the "
      "run's own config.json"
    )
  return Responder(
    config,
    params,
    tokenizer,
    separator=added[data["separator"]],
    eos_id=added["eos_id"],
    max_seq_len=data["max_seq_len"],
    cut_from=data.get("cut_from", "start"),
    decode=saved["decode"],
  )


class PromptResponseTask(FineTuningTask):
  """A GPT fine-tuned on prompt -> response pairs from init.checkpoint (a tfjax `lm` workdir or
  an HF GPT-2 / GPT-1 directory), or from scratch (`init.load_weights=False`, with
  data.tokenizer or init.checkpoint's tokenizer and architecture). The model is the LM itself:
  its params are a `GPT`'s with data.separator (and EOS if the tokenizer has none) added."""

  task_name = "prompt_response"
  family = "gpt"
  body_key = "gpt"
  model_config_cls = GPTConfig
  param_axes = PARAM_AXES
  tokenizer_files = GPTFineTuningTask.tokenizer_files
  load_tokenizer = GPTFineTuningTask.load_tokenizer  # a .model, a workdir's, an HF directory's
  run_identity = (
    "data.name",
    "data.prompt_field",
    "data.response_field",
    "data.train_split",
    "data.tasks",  # an instruction mixture's
    "data.max_train_per_task",
    "data.tokenizer",
    "data.max_seq_len",
    "data.separator",
    "data.packing",
    "data.truncate",
    "data.cut_from",
    "data.skip_empty",
    "init.checkpoint",
    "init.load_weights",
    "train.seed",
  )

  def validate(self) -> None:
    super().validate()
    data, decode = self.config.data, self.config.decode
    data_lib.check_data_config(data, fields=not self.is_mixture)
    if self.is_mixture:
      instructions.check_config(data)
    if not 1 <= decode.max_new_tokens < data.max_seq_len - 1:
      raise ValueError(
        f"decode.max_new_tokens={decode.max_new_tokens} must be in [1, data.max_seq_len - 1 = "
        f"{data.max_seq_len - 1}) to leave room for a prompt token and the separator"
      )
    if decode.batch_size < 1 or decode.num_test < 0:
      raise ValueError(
        f"decode.batch_size={decode.batch_size} must be >= 1 and decode.num_test="
        f"{decode.num_test} >= 0 (0: the whole test split)"
      )

  @property
  def is_mixture(self) -> bool:
    """Whether data.name is an instruction mixture rather than one TFDS dataset."""
    return self.config.data.name == instructions.NAME

  def prepare_data(self, workdir: str, process_index: int, process_count: int) -> TaskData:
    self.setup(workdir)
    data, train = self.config.data, self.config.train
    self.tokens = data_lib.prompt_tokens(
      self.tokenizer, self.model_config.vocab_size, data.separator
    )
    if self.is_mixture:
      pairs = instructions.read_mixture(data, train.seed)
    else:
      pairs = data_lib.read_splits(data)
    self._data = data_lib.encode_splits(data, pairs, self.tokenizer, self.tokens, train.seed)
    num_rows = len(self._data.train["inputs"])
    if num_rows < train.batch_size:
      raise ValueError(
        f"{pairs.train.name} makes {num_rows} rows of data.max_seq_len="
        f"{data.max_seq_len}, fewer than one batch (train.batch_size={train.batch_size}); lower "
        "train.batch_size or use more pairs"
      )
    train_iter = seq2seq.train_iterator(
      self._data.train, **self.train_iterator_args(process_index, process_count)
    )
    eval_rows = len(self._data.eval["inputs"])
    eval_batches = seq2seq.eval_batches(self._data.eval, train.batch_size, max_batches=eval_rows)
    return TaskData(train_iter, eval_batches, self._save_files)

  def _save_files(self, workdir: str) -> None:
    """The tokenizer, and the ids of the added tokens (after config.model.vocab_size)."""
    self.tokenizer.save(workdir)
    added = {name: self.model_config.vocab_size + i for i, name in enumerate(self.tokens.added)}
    write_output(
      workdir, load.ADDED_TOKENS_FILE, json.dumps({**added, "eos_id": self.tokens.eos}) + "\n"
    )

  @property
  def lm_config(self) -> GPTConfig:
    """The pre-trained architecture with the added embeddings (config.model keeps the
    pre-trained vocab_size, so it still describes the LM it came from)."""
    return self.model_config.replace(
      vocab_size=self.model_config.vocab_size + self.tokens.num_added
    )

  def model(self, activation_sharding: Any = None) -> GPT:
    return GPT(self.lm_config, activation_sharding=activation_sharding)

  def pretrained_key(self) -> str | None:
    """The whole tree is the pre-trained LM (no head): what LoRA (config.lora) freezes, the
    added separator / EOS rows included (only the adapters train)."""
    return "" if super().pretrained_key() is not None else None

  def initial_params(self, params: Any) -> Any:
    """The pre-trained LM (checked against the model's shapes) in place of the whole tree."""
    if not self.config.init.load_weights:
      return params
    return super().initial_params({self.body_key: params})[self.body_key]

  def pretrained_body(self) -> Any:
    """The LM of init.checkpoint with the separator (and EOS) rows appended."""
    lm = load.load(self.config.init.checkpoint, "gpt", tokenizer=False)
    rng = jax.random.fold_in(jax.random.key(self.config.train.seed), 1)
    return gpt.add_tokens(lm.params, self.tokens.num_added, rng, self.model_config.init_std)

  def loss_fn(self, model: GPT) -> LossFn:
    return response_loss_fn(model)

  def summarize(self, metrics: dict[str, float]) -> dict[str, float]:
    return {**metrics, "perplexity": math.exp(min(metrics["loss"], 50.0))}

  def flops_per_token(self, abstract_params: Any) -> float:
    return gpt_flops_per_token(self.lm_config, abstract_params, self.config.data.max_seq_len)

  def finish(self, params: Any, workdir: str, final: dict[str, Any], data: TaskData) -> list[str]:
    lines = [
      f"step {final['step']}: validation loss {final['eval_loss']:.3f} on the responses, "
      f"perplexity {final['eval_perplexity']:.2f}, token accuracy {final['eval_accuracy']:.3f}"
    ]
    test, decode = self._data.test, self.config.decode
    if test is None:
      return lines
    chosen = decoded_pairs(test, decode.num_test)
    prompts, references = [test.prompts[k] for k in chosen], [test.responses[k] for k in chosen]
    decoding = generation.Decoding.from_config(decode)
    responder = Responder(
      self.lm_config,
      sharding.on_host(params),
      self.tokenizer,
      separator=self.tokens.separator,
      eos_id=self.tokens.eos,
      max_seq_len=self.config.data.max_seq_len,
      cut_from=self.config.data.cut_from,
      decode=decode.to_dict(),
    )
    generated = responder.respond(prompts, decoding=decoding)
    records = []
    for k, reference, text in zip(chosen, references, generated, strict=True):
      task = {} if test.tasks is None else {"task": test.tasks[k]}
      records.append({"index": test.indices[k], **task, "reference": reference, "generated": text})
    write_output(workdir, RESPONSES_FILE, "".join(json.dumps(r) + "\n" for r in records))
    final["test_num_responses"] = len(records)
    if test.tasks is None:
      scores = score_responses(generated, references)
      final.update({f"test_{k}": v for k, v in scores.items()})
      lines.append(
        f"test ({self.config.data.test_split}): {len(records)} {decoding.name} responses, "
        + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
      )
    else:
      tasks = [r["task"] for r in records]
      lines += self._score_mixture(final, tasks, generated, references, decoding.name)
    lines.append(f"responses: {os.path.join(workdir, RESPONSES_FILE)}")
    return lines

  def _score_mixture(
    self,
    final: dict[str, Any],
    tasks: list[str],
    generated: list[str],
    references: list[str],
    strategy: str,
  ) -> list[str]:
    """Each task's test responses scored with its metric: `test_<task>_<score>` in `final`,
    and a report line per task."""
    metrics = {name: instructions.TASKS[name].metric for name in tasks}
    lines = []
    for task, scores in score_tasks(tasks, generated, references, metrics).items():
      count = tasks.count(task)
      final[f"test_{task}_num_responses"] = count
      final.update({f"test_{task}_{k}": v for k, v in scores.items()})
      line = f"test {task}: {count} {strategy} responses to its held-out template, " + ", ".join(
        f"{k} {v:.3f}" for k, v in scores.items()
      )
      if metrics[task] == "bleu":  # the settings beside the score (Post 2018)
        line += f" ({text_metrics.bleu(*by_task(tasks, generated, references)[task])[1]})"
      lines.append(line)
    return lines


def decoded_pairs(test: TextPairs, num_test: int) -> list[int]:
  """Which test pairs the end decodes: the first `num_test` (0: all) of the split, or of each
  task of an instruction mixture."""
  tasks = test.tasks or [""] * len(test)
  seen: dict[str, int] = {}
  chosen = []
  for k, task in enumerate(tasks):
    if not num_test or seen.get(task, 0) < num_test:
      chosen.append(k)
      seen[task] = seen.get(task, 0) + 1
  return chosen
