r"""Generates text from the latest checkpoint of a training workdir (or an HF GPT-2 directory).

python -m train.sample --workdir=workdir/gpt_tiny --prompt="The river" --prompt="In 1066,"
python -m train.sample --workdir=workdir/gpt_tiny --prompt="Paris is" --temperature=0
python -m train.sample --workdir=workdir/gpt_tiny --prompt="Paris is" --beam_size=4 \
  --no_repeat_ngram_size=3 --stop="."

A language model continues each prompt. A prompt -> response workdir (configs/
gpt_tiny_summarize.py, gpt_tiny_instructions.py) answers it instead: the prompt, its separator,
then the response up to EOS, decoded as the run decoded its test split (its config.decode and
decode.max_new_tokens; the defaults below are a language model's) except for the flags given
here. An instruction-tuned model answers best in its templates' words
(tfjax/data/instructions.py):

python -m train.sample --workdir=workdir/gpt_tiny_summarize --prompt="$(cat article.txt)"
"""

import dataclasses

from absl import app, flags, logging

from tfjax.inference import generation, load
from train.cli import one_line_errors

_WORKDIR = flags.DEFINE_string(
  "workdir", None, "A train/train.py workdir, or an HF GPT-2 directory (with its vocab files)."
)
_PROMPTS = flags.DEFINE_multi_string("prompt", ["The"], "Prompt(s) to continue.")
_MAX_NEW = flags.DEFINE_integer(
  "max_new_tokens", 64, "Tokens to generate per prompt (a prompt -> response run: its own)."
)
_TEMPERATURE = flags.DEFINE_float("temperature", 0.8, "0 means greedy.")
_TOP_K = flags.DEFINE_integer("top_k", 40, "Keep the k most likely tokens (0: all).")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus sampling mass (1.0: off).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_BEAM_SIZE = flags.DEFINE_integer(
  "beam_size", 1, "1: sample (or greedy at --temperature=0); above 1: beam search (no sampling)."
)
_LENGTH_PENALTY = flags.DEFINE_float(
  "length_penalty", 0.6, "Beam search's GNMT length-penalty exponent alpha (0: none)."
)
_NO_REPEAT = flags.DEFINE_integer(
  "no_repeat_ngram_size", 0, "n > 0: never repeat an n-gram of the prompt and output (0: off)."
)
_REPETITION_PENALTY = flags.DEFINE_float(
  "repetition_penalty", 1.0, "CTRL's penalty on tokens already seen, e.g. 1.2 (1.0: off)."
)
_STOP = flags.DEFINE_multi_string(
  "stop", [], "Cut each continuation before the first occurrence of this string (repeatable)."
)
flags.mark_flag_as_required("workdir")

_SAMPLING_FLAGS = generation.SAMPLING_FIELDS
_DECODING_FLAGS = [field.name for field in dataclasses.fields(generation.Decoding)]  # same names


def respond(workdir: str, prompts: list[str]) -> list[str]:
  """The responses of a prompt_response workdir: its config.decode, then the flags given."""
  from tfjax.tasks import prompt_response  # only here: the task pulls in the trainer

  responder = prompt_response.load_responder(workdir)
  given = {name: flags.FLAGS[name].value for name in _DECODING_FLAGS if flags.FLAGS[name].present}
  decoding = generation.Decoding.from_config(responder.decode).overridden(given)
  responses = responder.respond(
    prompts, decoding=decoding, max_new_tokens=_MAX_NEW.value if _MAX_NEW.present else None
  )
  return [generation.cut_at_stop(r, _STOP.value) for r in responses]


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  with one_line_errors():
    given = [f"--{name}" for name in _SAMPLING_FLAGS if flags.FLAGS[name].present]
    if _BEAM_SIZE.value != 1 and given:
      raise ValueError(
        f"beam search (--beam_size={_BEAM_SIZE.value}) does not sample: drop {', '.join(given)} "
        "or use --beam_size=1 to sample"
      )
    if load.workdir_task(_WORKDIR.value) == "prompt_response":
      responses = respond(_WORKDIR.value, _PROMPTS.value)
      for prompt, response in zip(_PROMPTS.value, responses, strict=True):
        print(f"{prompt}\n  -> {response}", end="\n\n")
      return
    model_config, params, tokenizer = load.load(_WORKDIR.value, "gpt")
    texts = generation.complete_texts(
      model_config,
      params,
      tokenizer,
      _PROMPTS.value,
      max_new_tokens=_MAX_NEW.value,
      seed=_SEED.value,
      temperature=_TEMPERATURE.value,
      top_k=_TOP_K.value,
      top_p=_TOP_P.value,
      beam_size=_BEAM_SIZE.value,
      length_penalty=_LENGTH_PENALTY.value,
      no_repeat_ngram_size=_NO_REPEAT.value,
      repetition_penalty=_REPETITION_PENALTY.value,
      stop=_STOP.value,
    )
  for text in texts:
    print(text, end="\n\n")


if __name__ == "__main__":
  app.run(main)
