r"""Fine-tunes the pre-trained gpt_tiny on Rotten Tomatoes sentiment (fresh / rotten), GPT-1's
classification transformation; 2-core CPU.

Commands (pre-train first as configs/gpt_tiny_topics.py says; the second is the from-scratch
baseline):

  python -m train.train --config=configs/gpt_tiny_sentiment.py \
      --workdir=workdir/gpt_tiny_sentiment
  python -m train.train --config=configs/gpt_tiny_sentiment.py \
      --workdir=workdir/gpt_tiny_sentiment_scratch --config.init.load_weights=False

LoRA (Hu et al. 2021: the pre-trained weights frozen, rank-8 adapters on the attention
projections and the classifier trained; measured against full fine-tuning by
`python -m benchmarks.lora --train`):

  python -m train.train --config=configs/gpt_tiny_sentiment.py \
      --workdir=workdir/gpt_tiny_sentiment_lora --config.lora.rank=8 \
      --config.train.learning_rate=1e-3

The budget of configs/bert_tiny_sentiment.py; compared with BERT by benchmarks/gpt_vs_bert.py.
Expected, measured with benchmarks/gpt_vs_bert.py's settings: test accuracy 0.719 / 0.710
(seeds 0 / 1; from scratch 0.736 / 0.729; always "fresh" 0.573), about 7 minutes on one core.
"""

import ml_collections

from configs import gpt_tiny_topics


def get_config() -> ml_collections.ConfigDict:
  config = gpt_tiny_topics.get_config()
  config.data.update(name="rotten_tomatoes", max_seq_len=64)
  return config
