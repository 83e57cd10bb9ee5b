r"""Generates text from the latest checkpoint of a training workdir (or an HF GPT-2 directory).

python -m train.sample --workdir=workdir/gpt_tiny --prompt="The river" --prompt="In 1066,"
python -m train.sample --workdir=workdir/gpt_tiny --prompt="Paris is" --temperature=0
"""

from absl import app, flags, logging

from tfjax.inference import load, sampling
from train.cli import one_line_errors

_WORKDIR = flags.DEFINE_string(
  "workdir", None, "A train/train.py workdir, or an HF GPT-2 directory (with its vocab files)."
)
_PROMPTS = flags.DEFINE_multi_string("prompt", ["The"], "Prompt(s) to continue.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 64, "Tokens to generate per prompt.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.8, "0 means greedy.")
_TOP_K = flags.DEFINE_integer("top_k", 40, "Keep the k most likely tokens (0: all).")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus sampling mass (1.0: off).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.mark_flag_as_required("workdir")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  with one_line_errors():
    model_config, params, tokenizer = load.load(_WORKDIR.value, "gpt")
    texts = sampling.complete_texts(
      model_config,
      params,
      tokenizer,
      _PROMPTS.value,
      max_new_tokens=_MAX_NEW.value,
      seed=_SEED.value,
      temperature=_TEMPERATURE.value,
      top_k=_TOP_K.value,
      top_p=_TOP_P.value,
    )
  for text in texts:
    print(text, end="\n\n")


if __name__ == "__main__":
  app.run(main)
