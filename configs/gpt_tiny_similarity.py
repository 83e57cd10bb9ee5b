r"""Fine-tunes the pre-trained gpt_tiny to rate how similar two news texts are (gensim's Lee
corpus: 1,225 pairs of 50 documents with mean human ratings in [0, 1]), GPT-1's similarity
transformation (both orders, their extract states added) as a regression; reports Pearson and
Spearman correlations. 2-core CPU.

  python -m train.train --config=configs/gpt_tiny_similarity.py \
      --workdir=workdir/gpt_tiny_similarity

The documents are paragraphs of 50 to 200 words: each order is cut to max_seq_len (the count is
logged).
Expected: test Pearson and Spearman correlations with the human ratings, and the mean
squared error beside predicting the training mean. A model must beat what reads no text:
each document's mean training rating (mean_i + mean_j - mean) scores test Pearson 0.353,
Spearman 0.383 (documents recur across the pair splits; see tfjax/data/datasets/lee_similarity.py).
"""

import ml_collections

from configs import gpt_tiny_topics


def get_config() -> ml_collections.ConfigDict:
  config = gpt_tiny_topics.get_config()
  config.data.update(
    name="lee_similarity",
    transformation="similarity",
    text_field="text_a",
    text_pair_field="text_b",
    label_field="similarity",
  )
  return config
