r"""The summarisation table: ROUGE-1/2/L on the test split of each summarisation dataset
(tfjax/data/summaries.py) of summaries made without a model, by the pre-trained gpt_tiny
zero-shot, and by gpt_tiny fine-tuned on the train split (configs/gpt_tiny_summarize.py):

  python -m benchmarks.summarization               # everything (needs workdir/gpt_tiny)
  python -m benchmarks.summarization --models=     # the baselines alone, a few seconds

  lead-N                the article's first N words, N = the mean reference length in words
                        on the train split (tfjax/tasks/summary_baselines.py says why)
  random other summary  the reference of another test example (a seeded derangement)
  zero_shot             GPT-2's zero-shot summaries (Radford et al. 2019, §3.6): the article,
                        then "TL;DR:", 24 tokens sampled with top-k 2, cut at the first ". " or
                        line end, from the pre-trained gpt_tiny (no fine-tuning)
  fine_tuned            gpt_tiny fine-tuned on `article <summarize> summary <eos>`, greedy
  fine_tuned_beam       the same checkpoint, beam search (beam 4, length penalty 0.6), and
                        beam search that never repeats a 3-gram (BART's summarisation setting)
  scratch               the fine-tuning recipe from random weights (init.load_weights=False)

Each fine-tuning run keeps its workdir under --workdir (a rerun skips a finished one). The
prompt is cut to fit as the run's config says (configs/gpt_tiny_summarize.py). ROUGE is
google-research's rouge-score with the Porter stemmer, the mean of per-example F-measures x100
(tfjax/tasks/text_metrics.py). bigbench/gem_xsum needs the BIG-bench archive in TFDS's manual
dir; without it the dataset is skipped with one line giving the download command. Writes
benchmarks/results/summarization.{json,md} (--out_dir): statistics and scores only, no text of
the datasets.
"""

import json
import os

from absl import app, flags

from configs import gpt_tiny_summarize
from tfjax.data import summaries
from tfjax.inference import generation, load
from tfjax.tasks import registry, summary_baselines, text_metrics
from tfjax.tasks.prompt_response import decode_responses, load_responder

_OUT_DIR = flags.DEFINE_string("out_dir", "benchmarks/results", "Where the results go.")
_WORKDIR = flags.DEFINE_string("workdir", "workdir/summarization", "The fine-tuning workdirs.")
_GPT = flags.DEFINE_string("gpt_checkpoint", "workdir/gpt_tiny", "The pre-trained gpt_tiny.")
_MODELS = flags.DEFINE_list(
  "models", ["zero_shot", "fine_tuned", "fine_tuned_beam", "scratch"], "Model rows to measure."
)
_TFDS_DIR = flags.DEFINE_string("tfds_data_dir", "", "TFDS data dir ('' for the default).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the derangement, the sampling, fine-tuning.")

NAMES = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L"}
# Fine-tuning steps per dataset: about one epoch of wiki's 8,876 pairs, three of xsum's 806
# (GPT-1's 3 epochs, §4.1), rows of 16 x 128 tokens; multiples of 20, so that checkpoint_every
# (half the run) is a multiple of train.log_every (10).
STEPS = {"wiki_vital_articles": 600, "bigbench/gem_xsum": 160}
ZERO_SHOT = generation.Decoding(temperature=1.0, top_k=2)  # GPT-2 §3.6
BEAM = generation.Decoding(beam_size=4, length_penalty=0.6)
BEAM_NO_REPEAT = generation.Decoding(beam_size=4, length_penalty=0.6, no_repeat_ngram_size=3)


def measure_baselines(name: str, splits: dict, seed: int) -> dict:
  """Pair counts per split, lead-N's N, and each baseline's test ROUGE for one dataset."""
  train, test = splits["train"], splits["test"]
  n = summary_baselines.mean_words(train.responses)
  return {
    "pairs": {split: len(p) for split, p in splits.items()},
    "dropped_empty": {split: p.dropped for split, p in splits.items()},
    "lead_n": n,
    "mean_words": {
      "train_prompt": sum(len(t.split()) for t in train.prompts) / len(train),
      "train_response": sum(len(t.split()) for t in train.responses) / len(train),
    },
    "test_rouge": summary_baselines.baseline_rouge(
      train.responses, test.prompts, test.responses, seed=seed, lead_n=n
    ),
  }


def fine_tuning_config(name: str, scratch: bool):
  prompt_field, response_field = summaries.FIELDS[name]
  config = gpt_tiny_summarize.get_config()
  steps = STEPS[name]
  config.data.update(
    name=name,
    prompt_field=prompt_field,
    response_field=response_field,
    tfds_data_dir=_TFDS_DIR.value,
  )
  config.init.update(checkpoint=_GPT.value, load_weights=not scratch)
  config.train.update(
    seed=_SEED.value,
    num_steps=steps,
    warmup_steps=steps // 10,
    eval_every=steps,
    checkpoint_every=steps // 2,
  )
  return config


def fine_tuned(name: str, scratch: bool) -> tuple[dict, str]:
  """The final metrics of the fine-tuning run (trained unless finished) and its workdir."""
  slug = name.replace("/", "_") + ("_scratch" if scratch else "")
  workdir = os.path.join(_WORKDIR.value, slug)
  done = os.path.join(workdir, "final_metrics.json")
  if not os.path.exists(done):
    registry.train(fine_tuning_config(name, scratch), workdir)
  with open(done) as f:
    return json.load(f), workdir


def decoded_rouge(responder, test, decoding: generation.Decoding) -> dict[str, float]:
  """ROUGE of a fine-tuned checkpoint's summaries of the test split by `decoding`."""
  generated = responder.respond(test.prompts, decoding=decoding)
  return text_metrics.rouge(generated, test.responses)


def zero_shot_rouge(test) -> dict[str, float]:
  """ROUGE of GPT-2 §3.6's zero-shot summaries by the pre-trained model."""
  config = gpt_tiny_summarize.get_config()
  model_config, params, tokenizer = load.load(_GPT.value, "gpt")
  generated = decode_responses(
    model_config,
    params,
    tokenizer,
    test.prompts,
    suffix=tokenizer.encode(" TL;DR:"),
    eos_id=tokenizer.eos_id,
    max_seq_len=config.data.max_seq_len,
    max_new_tokens=config.decode.max_new_tokens,
    batch_size=config.decode.batch_size,
    cut_from=config.data.cut_from,
    decoding=ZERO_SHOT,
  )
  first = [generation.cut_at_stop(text, (". ", "\n")).strip() for text in generated]
  return text_metrics.rouge(first, test.responses)


def measure(name: str, models: list[str]) -> dict:
  splits = summaries.read_splits(name, _TFDS_DIR.value or None)
  result = measure_baselines(name, splits, _SEED.value)
  rows, test = result["test_rouge"], splits["test"]
  if "zero_shot" in models:
    rows["gpt_tiny zero-shot (TL;DR:, top-k 2)"] = zero_shot_rouge(test)
  if {"fine_tuned", "fine_tuned_beam"} & set(models):
    final, workdir = fine_tuned(name, scratch=False)
    if "fine_tuned" in models:
      rows["gpt_tiny fine-tuned, greedy"] = {k: final[f"test_{k}"] for k in NAMES}
    if "fine_tuned_beam" in models:
      responder = load_responder(workdir)
      rows["gpt_tiny fine-tuned, beam 4"] = decoded_rouge(responder, test, BEAM)
      rows["gpt_tiny fine-tuned, beam 4, no repeated 3-gram"] = decoded_rouge(
        responder, test, BEAM_NO_REPEAT
      )
  if "scratch" in models:
    final, _ = fine_tuned(name, scratch=True)
    rows["the same from scratch, greedy"] = {k: final[f"test_{k}"] for k in NAMES}
  return result


def table(results: dict, skipped: dict) -> str:
  lines = [
    "| dataset (test pairs) | summaries | " + " | ".join(NAMES.values()) + " |",
    "|---" * (2 + len(NAMES)) + "|",
  ]
  for name, r in results.items():
    for row, scores in r["test_rouge"].items():
      cells = " | ".join(f"{scores[k]:.1f}" for k in NAMES)
      lines.append(f"| {name} ({r['pairs']['test']:,}) | {row} | {cells} |")
  for name in skipped:
    lines.append(f"| {name} | skipped: its source files are missing |" + " |" * len(NAMES))
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  del argv
  results, skipped = {}, {}
  for name in summaries.FIELDS:
    try:
      results[name] = measure(name, _MODELS.value)
    except FileNotFoundError as e:
      skipped[name] = str(e)
      print(f"skipped {name}: {e}")
  os.makedirs(_OUT_DIR.value, exist_ok=True)
  stem = os.path.join(_OUT_DIR.value, "summarization")
  with open(stem + ".json", "w") as f:
    meta = {
      "rouge": "rouge-score, use_stemmer=True; mean of per-example F-measure x100",
      "rouge_types": list(text_metrics.ROUGE_TYPES),
      "seed": _SEED.value,
      "fine_tuning_steps": STEPS,
      "models": _MODELS.value,
    }
    json.dump({**meta, "datasets": results, "skipped": sorted(skipped)}, f, indent=2)
    f.write("\n")
  markdown = table(results, skipped)
  with open(stem + ".md", "w") as f:
    f.write(markdown + "\n")
  print(markdown)
  print(f"wrote {stem}.json, .md; ROUGE F-measures x100 on the test split")


if __name__ == "__main__":
  app.run(main)
