r"""Translates sentences with the Transformer trained in --workdir (its averaged checkpoints, as
the test split is); train one first with train/train.py.

python -m train.train --config=configs/transformer_tiny.py --workdir=workdir/transformer_tiny
python -m train.translate --config=configs/transformer_tiny.py --workdir=workdir/transformer_tiny \
    "Open the selected file in a new window." "The printer is out of paper."
"""

import sys

from absl import app, flags, logging

from train.cli import one_line_errors, parse_flags


def translate(config, workdir: str, sentences: list[str], beam_size: int | None) -> list[str]:
  """Translates `sentences` with the averaged checkpoints of `workdir` (as the test split is)."""
  from tfjax.inference import load, seq2seq

  model_config, params, tokenizer = load.load(
    workdir, "transformer", average_last=config.decode.average_last
  )
  if tokenizer.vocab_size != config.model.vocab_size:
    raise ValueError(
      f"{workdir}'s tokenizer has {tokenizer.vocab_size} tokens but model.vocab_size is "
      f"{config.model.vocab_size}: the checkpoint is of another vocabulary; pass the config "
      "it was trained with"
    )
  decode = config.decode
  return seq2seq.translate_texts(
    model_config,
    params,
    tokenizer,
    sentences,
    truncate=config.data.truncate,
    max_source_len=config.data.max_len - 1,  # what training saw
    beam_size=decode.beam_size if beam_size is None else beam_size,
    alpha=decode.alpha,
    extra_len=decode.extra_len,
    batch_size=decode.batch_size,
  )


def main() -> None:
  from ml_collections import config_flags

  workdir = flags.DEFINE_string("workdir", None, "A workdir of a translation run.")
  config_flags.DEFINE_config_file(
    "config", None, "The configs/transformer_*.py file it was trained with.", lock_config=True
  )
  beam = flags.DEFINE_integer("beam_size", None, "Translating sentences: 0 for greedy.")
  flags.mark_flags_as_required(["config", "workdir"])

  def run(argv: list[str]) -> None:
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    sentences = argv[1:]
    if not sentences:
      raise app.UsageError(
        "give the sentences to translate as arguments; to train a model, run "
        "python -m train.train with the same --config and --workdir"
      )
    with one_line_errors():
      targets = translate(flags.FLAGS.config, workdir.value, sentences, beam.value)
      for source, target in zip(sentences, targets, strict=True):
        print(f"{source}\n  -> {target}")

  app.run(run, flags_parser=parse_flags)


if __name__ == "__main__":
  sys.exit(main())
