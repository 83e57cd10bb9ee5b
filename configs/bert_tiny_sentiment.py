r"""Fine-tunes the pre-trained bert_tiny on Rotten Tomatoes sentiment (fresh / rotten), 2-core CPU.

Commands (pre-train first with configs/bert_tiny.py; the second is the from-scratch baseline):

  python -m train.bert --config=configs/bert_tiny_sentiment.py \
      --workdir=workdir/bert_tiny_sentiment
  python -m train.bert --config=configs/bert_tiny_sentiment.py \
      --workdir=workdir/bert_tiny_sentiment_scratch --config.init.load_weights=False

Expected: about 3 minutes each; test accuracy of the fine-tuned model above the from-scratch
one (README "BERT" has both); BERT-base reaches ~0.93 on SST-2, this CPU-sized model far less.
"""

import ml_collections

from configs import bert_tiny_topics


def get_config() -> ml_collections.ConfigDict:
  config = bert_tiny_topics.get_config()
  config.data.update(name="rotten_tomatoes", max_seq_len=64)
  return config
