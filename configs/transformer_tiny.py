r"""A small Transformer (Vaswani et al. 2017) translating English to German on a 2-core CPU.

Data: `gettext_translations/en-de`, real human translations of software messages from Debian
gettext catalogs (tfjax/data/datasets/gettext_translations.py; fetched once with
`apt-get download`).
The paper's recipe scaled down: post-LN, sinusoidal positions, one shared 8k sentencepiece
vocabulary with tied embeddings, label smoothing 0.1, Adam(0.9, 0.98, 1e-9) on the
inverse-square-root schedule, rows packed to a fixed token count, beam 4 with length penalty
0.6, the last checkpoints averaged.

Command (prepares the data and tokenizer on first use, trains, then translates the test split
greedily and with beam search and prints sacrebleu BLEU beside copying the source):

  python -m train.train --config=configs/transformer_tiny.py --workdir=workdir/transformer_tiny

Then translate sentences with the trained model (the same averaged checkpoints):

  python -m train.translate --config=configs/transformer_tiny.py \
      --workdir=workdir/transformer_tiny "Open the selected file in a new window."

Expected: about 25 minutes on 2 CPU cores (24 of them training, ~1.7k target token slots/s);
validation perplexity about 25; test BLEU (sacrebleu, 495 sentences) about 11.1 greedy and 11.8
with beam search, against 3.2 for copying the source (measured; README "The Transformer").
"""

import ml_collections

from configs import transformer_base


def get_config() -> ml_collections.ConfigDict:
  config = transformer_base.get_config()
  config.model.update(
    vocab_size=8192, max_len=128, num_layers=3, num_heads=4, d_model=256, d_ff=1024
  )
  config.data.update(name="gettext_translations/en-de", source_lang="en", target_lang="de")
  config.data.max_len = 64  # tokens per packed row (source and target sides)
  config.train.update(
    batch_size=32,  # 32 rows x 64 = 2,048 token slots per side
    num_steps=1200,
    warmup_steps=300,
    log_every=20,
    eval_every=300,
    eval_batches=8,
    checkpoint_every=100,
    max_to_keep=5,
  )
  config.decode.update(batch_size=64, average_last=5)
  return config
