r"""BERT-base (110,106,428 parameters with the MLM and NSP heads; 109,482,240 in the encoder and
pooler): 12 layers, d_model 768, 12 heads, d_ff 3072, 512 positions, WordPiece vocab 30,522.

Devlin et al. 2018, §A.2: batch 256 x 512 tokens (the paper trains 90% of the steps at 128),
1M steps, Adam lr 1e-4, b1 0.9, b2 0.999, L2 weight decay 0.01, 10k warmup steps then linear
decay, dropout 0.1, GELU. Here the tokenizer is a sentencepiece model of the same size trained
on `data.name`; for the real BERT vocabulary and weights, import an HF checkpoint with
`tfjax.hub.bert` and fine-tune it (README "BERT").

Command (needs accelerators; on CPU use it with `jax.eval_shape` only):

  python -m train.train --config=configs/bert_base.py --workdir=workdir/bert_base \
      --config.data.name=wikipedia/20230601.en --config.data.text_field=text

Expected: the paper pre-trained BERT-base in 4 days on 16 TPU chips (§A.2); then fine-tuned,
GLUE scores as its Table 1 (e.g. SST-2 93.5, MRPC 88.9 F1) and SQuAD v1.1 88.5 F1 (Table 2).
Not run here (no accelerator was available to this project's tests).
"""

import ml_collections

from configs import bert_tiny


def get_config() -> ml_collections.ConfigDict:
  config = bert_tiny.get_config()
  config.model.update(
    vocab_size=30522, max_len=512, num_layers=12, num_heads=12, d_model=768, d_ff=3072
  )
  config.data.update(max_seq_len=512, max_predictions_per_seq=80)
  config.train.update(
    batch_size=256,
    num_steps=1_000_000,
    learning_rate=1e-4,
    warmup_steps=10_000,
    eps=1e-6,
    eval_every=10_000,
    eval_batches=50,
    checkpoint_every=10_000,
  )
  return config
