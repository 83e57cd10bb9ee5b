r"""Fine-tunes the pre-trained bert_tiny on Rotten Tomatoes sentiment (fresh / rotten), 2-core CPU.

Commands (pre-train first with configs/bert_tiny.py; the second is the from-scratch baseline):

  python -m train.train --config=configs/bert_tiny_sentiment.py \
      --workdir=workdir/bert_tiny_sentiment
  python -m train.train --config=configs/bert_tiny_sentiment.py \
      --workdir=workdir/bert_tiny_sentiment_scratch --config.init.load_weights=False

LoRA (Hu et al. 2021: the pre-trained weights frozen, rank-8 adapters on the attention
projections and the classifier trained; measured against full fine-tuning by
`python -m benchmarks.lora --train`):

  python -m train.train --config=configs/bert_tiny_sentiment.py \
      --workdir=workdir/bert_tiny_sentiment_lora --config.lora.rank=8 \
      --config.train.learning_rate=1e-3

Expected: about 4.5 minutes each on 2 CPU cores (measured with two runs sharing them); test
accuracy 0.715 fine-tuned vs 0.727 from scratch (seed 0; 0.690 vs 0.714 with seed 1), against
0.573 for always "fresh": movie reviews are out of the pre-training corpus's domain and this
small pre-training does not help them. From the real MiniLM-L6 (README "BERT"): 0.803.
"""

import ml_collections

from configs import bert_tiny_topics


def get_config() -> ml_collections.ConfigDict:
  config = bert_tiny_topics.get_config()
  config.data.update(name="rotten_tomatoes", max_seq_len=64)
  return config
