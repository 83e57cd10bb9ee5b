r"""GPT-2 small (124,439,808 parameters): 12 layers, d_model 768, 12 heads, 1024 context.

Radford et al. 2019: pre-LN blocks with a final LayerNorm, residual projections initialised with
std 0.02 / sqrt(2 * num_layers), tied output embedding, byte-level BPE of 50,257 tokens. Here
the tokenizer is a sentencepiece BPE of the same size trained on `data.name`; for the real
GPT-2 vocabulary and weights, import an HF checkpoint with `tfjax.hub.gpt2`.
The paper gives no optimizer settings: lr 6e-4 and Adam b2 0.95 follow nanoGPT's GPT-2
reproduction; the decoupled weight decay of 0.01 on matrices only is GPT-1's.

Command (needs an accelerator for useful speed; on CPU use it with `jax.eval_shape` only):

  python -m train.train --config=configs/gpt2_small.py --workdir=workdir/gpt2_small \
      --config.data.name=lm1b --config.data.text_field=text

Expected: lm1b validation perplexity falling steadily; for this size nanoGPT reports a
validation loss of about 2.85 on OpenWebText after some 400k steps of ~0.5M tokens.
"""

import ml_collections

from configs import gpt_tiny


def get_config() -> ml_collections.ConfigDict:
  config = gpt_tiny.get_config()
  config.model.update(
    vocab_size=50257,
    max_len=1024,
    num_layers=12,
    num_heads=12,
    d_model=768,
    d_ff=3072,
    dropout_rate=0.1,
    attention_dropout_rate=0.1,
  )
  config.data.seq_len = 1024
  config.train.update(
    batch_size=64,
    num_steps=100_000,
    learning_rate=6e-4,
    warmup_steps=2000,
    b2=0.95,
    weight_decay=0.01,
    eval_every=2000,
    eval_batches=50,
    checkpoint_every=2000,
  )
  return config
