r"""Fine-tunes an imported HF GPT-2 to write an article's short description from its lead, as
configs/gpt_tiny_summarize.py does: `extract <summarize> description <|endoftext|>` on
wiki_vital_articles (GPT-2's own EOS ends the response; only <summarize> is added).

init.checkpoint: an HF GPT-2 directory (config.json, model.safetensors, vocab.json, merges.txt);
the architecture is taken from it. GPT-2 §3.6 summarised zero-shot with "TL;DR:"; this learns
a separator token instead, with GPT-1's fine-tuning optimizer (lr 6.25e-5, linear decay).

  python -m train.train --config=configs/gpt2_summarize.py --workdir=workdir/gpt2_summarize \
      --config.init.checkpoint=<GPT-2 directory>

num_steps is about 1 epoch of the default data (8,876 pairs with a description, 16 per batch).
Expected: not run here (no GPT-2 weights offline; it needs an accelerator for useful speed); the
run prints the validation loss, perplexity and token accuracy on the descriptions, and the
exact-match rate of the test descriptions.
"""

import ml_collections

from configs import gpt2_small, gpt_tiny_summarize


def get_config() -> ml_collections.ConfigDict:
  config = gpt_tiny_summarize.get_config()
  config.model = gpt2_small.get_config().model  # replaced by init.checkpoint's architecture
  config.model.update(dropout_rate=0.1, attention_dropout_rate=0.1)
  config.init = ml_collections.ConfigDict(dict(checkpoint="workdir/gpt2", load_weights=True))
  config.data.update(max_seq_len=256)  # of GPT-2's 1024 positions: most extracts fit whole
  config.train.update(
    batch_size=16,
    num_steps=555,
    learning_rate=6.25e-5,
    schedule="linear",
    warmup_steps=5,
    eval_every=185,
    checkpoint_every=185,
    log_every=5,
  )
  return config
