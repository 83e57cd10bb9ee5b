r"""A tiny BERT pre-trained with MLM + NSP on the Wikipedia vital-articles corpus, on a 2-core CPU.

Command (prepares the corpus and a sentencepiece tokenizer with BERT's special tokens on first
use, pre-trains, then shows fill-mask predictions):

  python -m train.train --config=configs/bert_tiny.py --workdir=workdir/bert_tiny

Expected: about 30 minutes on 2 CPU cores (1,500 steps of 32 x 128 tokens at ~3.7k tokens/s;
38 measured while sharing the cores); validation MLM accuracy 0.145 (always guessing the most
frequent token, ",", gets 0.051) and NSP accuracy 0.75 (chance 0.5). Its fill-mask guesses are
still mostly function words: a 5M-parameter BERT after 6M tokens. Fine-tune it with
configs/bert_tiny_topics.py or configs/bert_tiny_sentiment.py.
"""

import ml_collections

from configs import gpt_tiny


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = "bert_pretraining"

  config.model = ml_collections.ConfigDict(
    dict(
      vocab_size=8192,
      max_len=128,
      type_vocab_size=2,
      num_layers=4,
      num_heads=4,
      d_model=256,
      d_ff=1024,
      activation="gelu",
      dropout_rate=0.1,
      attention_dropout_rate=0.1,
      layer_norm_epsilon=1e-12,
      init_std=0.02,
      pad_id=0,
      dtype="float32",
      remat_policy="none",
    )
  )

  config.data = ml_collections.ConfigDict(
    dict(
      name="wiki_vital_articles",  # or any TFDS text dataset with documents, e.g. "wikipedia/..."
      text_field="extract",
      train_split="train",
      eval_split="validation",
      tfds_data_dir="",  # "" -> TFDS default (~/tensorflow_datasets or $TFDS_DATA_DIR)
      cache_dir="",  # "" -> <tfds_data_dir>/tfjax_cache
      # "sentencepiece" (trained on train_split with model.vocab_size pieces), "bert-base-uncased"
      # (its WordPiece vocab, installed offline; model.vocab_size=30522) or a vocab.txt / .model
      tokenizer="sentencepiece",
      lowercase=True,  # a vocab.txt's; a checkpoint directory's tokenizer_config.json wins
      max_seq_len=128,
      max_predictions_per_seq=20,
      masked_lm_prob=0.15,
      short_seq_prob=0.1,
    )
  )

  # BERT's optimizer (§A.2): Adam with decoupled weight decay 0.01 on matrices, warmup then
  # linear decay to 0. The paper's 1e-4 over 1M steps; a tiny model on few steps takes more.
  config.train = ml_collections.ConfigDict(
    dict(
      seed=0,
      batch_size=32,
      num_steps=1500,
      schedule="linear",
      learning_rate=1e-3,
      warmup_steps=150,
      weight_decay=0.01,
      b1=0.9,
      b2=0.999,
      eps=1e-6,
      grad_clip_norm=1.0,
      log_every=10,
      eval_every=500,
      eval_batches=8,
      checkpoint_every=500,
      max_to_keep=3,
      on_nonfinite="stop",  # a NaN/inf loss or gradient stops the run; "skip": skip it
      max_consecutive_nonfinite=10,  # "skip" stops after this many skips in a row
      grad_accum_steps=1,
    )
  )
  config.parallel = gpt_tiny.get_config().parallel

  config.sample = ml_collections.ConfigDict(
    dict(
      fill_mask=(
        "Paris is the capital of [MASK].",
        "The Earth orbits the [MASK].",
        "Water is made of hydrogen and [MASK].",
      ),
      top_k=5,
    )
  )
  return config
