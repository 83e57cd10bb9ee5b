r"""GPT-1 (116,534,784 parameters), as in Radford et al. 2018, §4.1.

12 post-LN layers, d_model 768, 12 heads, d_ff 3072, 512 context, learned positions, GELU,
output tied to the token embedding (as HF's OpenAIGPT), N(0, 0.02) init, dropout 0.1 on
residuals, embeddings and attention. Adam with max lr 2.5e-4, linear warmup from 0 over 2,000
updates then cosine to 0; L2 0.01 on non-bias, non-gain weights; batches of 64 x 512 tokens;
vocabulary of 40,478 (here a sentencepiece BPE of that size trained on `data.name`).

  python -m train.train --config=configs/gpt1.py --workdir=workdir/gpt1 \
      --config.data.name=lm1b --config.data.text_field=text

Expected: the paper trains 100 epochs of BooksCorpus (~800M words) on 8 GPUs for a month, to a
perplexity of 18.4; budget accordingly.
"""

import ml_collections

from configs import gpt_tiny


def get_config() -> ml_collections.ConfigDict:
  config = gpt_tiny.get_config()
  config.model.update(
    vocab_size=40478,
    max_len=512,
    num_layers=12,
    num_heads=12,
    d_model=768,
    d_ff=3072,
    activation="gelu_tanh",
    pre_norm=False,
    scale_residual_init=False,
    dropout_rate=0.1,
    attention_dropout_rate=0.1,
  )
  config.data.seq_len = 512
  config.train.update(
    batch_size=64,
    num_steps=100_000,
    learning_rate=2.5e-4,
    warmup_steps=2000,
    b1=0.9,
    b2=0.999,
    weight_decay=0.01,
    eval_every=2000,
    eval_batches=50,
    checkpoint_every=2000,
  )
  return config
