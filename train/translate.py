r"""Trains a Transformer translation model, then scores the test split with BLEU; or, given
sentences, translates them with the trained model in --workdir.

python -m train.translate --config=configs/transformer_tiny.py --workdir=workdir/transformer_tiny
python -m train.translate --config=configs/transformer_tiny.py --workdir=workdir/transformer_tiny \
    "Open the selected file in a new window." "The printer is out of paper."
"""

import os
import sys

from absl import app, flags, logging

from train.cli import one_line_errors, parse_flags


def translate(config, workdir: str, sentences: list[str], beam_size: int | None) -> list[str]:
  """Translates `sentences` with the averaged checkpoints of `workdir` (as the test split is)."""
  import jax
  import jax.numpy as jnp

  from tfjax import translation
  from tfjax.data.tokenizer import SentencePieceTokenizer
  from tfjax.models.transformer import Transformer, TransformerConfig
  from tfjax.training import checkpoint

  model_config = TransformerConfig.from_config(config.model)
  path = os.path.join(workdir, "tokenizer.model")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no {path}: train a model in {workdir} first (without sentences)")
  tokenizer = SentencePieceTokenizer.load(path)
  if tokenizer.vocab_size != model_config.vocab_size:
    raise ValueError(
      f"{path} has {tokenizer.vocab_size} tokens but model.vocab_size is "
      f"{model_config.vocab_size}: the checkpoint is of another vocabulary; pass the config "
      "it was trained with"
    )
  dummy = jax.ShapeDtypeStruct((1, 8), jnp.int32)
  abstract = jax.eval_shape(Transformer(model_config).init, jax.random.key(0), dummy, dummy)
  params, _ = checkpoint.average_checkpoints(
    workdir, abstract["params"], config.decode.average_last
  )
  decode = config.decode
  return translation.translate_texts(
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

  workdir = flags.DEFINE_string("workdir", None, "Checkpoints, metrics and outputs go here.")
  config_flags.DEFINE_config_file("config", None, "A configs/transformer_*.py file.")
  beam = flags.DEFINE_integer("beam_size", None, "Translating sentences: 0 for greedy.")
  flags.mark_flags_as_required(["config", "workdir"])

  def run(argv: list[str]) -> None:
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    sentences = argv[1:]
    with one_line_errors():
      if sentences:
        targets = translate(flags.FLAGS.config, workdir.value, sentences, beam.value)
        for source, target in zip(sentences, targets, strict=True):
          print(f"{source}\n  -> {target}")
      else:
        from tfjax.tasks import registry

        registry.train(flags.FLAGS.config, workdir.value)

  app.run(run, flags_parser=parse_flags)


if __name__ == "__main__":
  sys.exit(main())
