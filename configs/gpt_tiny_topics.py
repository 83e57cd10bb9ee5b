r"""Fine-tunes the pre-trained gpt_tiny on the 11 Wikipedia topics (wiki_topics) as GPT-1 did:
[start] text [extract], a linear layer on the extract state, L = L_task + 0.5 L_LM; 2-core CPU.

Commands (pre-train first with the budget of bert_tiny, 1,500 steps of 32 x 128 tokens, so the
GPT vs BERT comparison gives both the same pre-training; the second run is the from-scratch
baseline: the same architecture, tokenizer and budget, fresh weights; the third drops the
auxiliary LM loss):

  python -m train.train --config=configs/gpt_tiny.py --workdir=workdir/gpt_tiny \
      --config.train.batch_size=32 --config.train.num_steps=1500 --config.train.warmup_steps=150
  python -m train.train --config=configs/gpt_tiny_topics.py --workdir=workdir/gpt_tiny_topics
  python -m train.train --config=configs/gpt_tiny_topics.py \
      --workdir=workdir/gpt_tiny_topics_scratch --config.init.load_weights=False
  python -m train.train --config=configs/gpt_tiny_topics.py \
      --workdir=workdir/gpt_tiny_topics_no_lm --config.fine_tuning.lm_coef=0

The fine-tuning budget and optimizer are those of configs/bert_tiny_topics.py (300 steps of 32,
lr 3e-4, 10% warmup, linear decay): GPT vs BERT by benchmarks/gpt_vs_bert.py. To fine-tune an
imported HF GPT-2 or GPT-1 instead: --config.init.checkpoint=<its directory>.
Expected, measured with benchmarks/gpt_vs_bert.py's settings (64 tokens): test accuracy 0.900 /
0.909 (seeds 0 / 1; from scratch 0.794 / 0.734; the most frequent topic 0.215), about 7
minutes on one core.
"""

import ml_collections

from configs import bert_tiny_topics, gpt_tiny


def get_config() -> ml_collections.ConfigDict:
  config = gpt_tiny.get_config()
  config.task = "gpt_fine_tuning"
  # The architecture is taken from init.checkpoint; dropout, dtype and remat stay ours (§4.1:
  # dropout 0.1 everywhere, the classifier too).
  config.model.update(dropout_rate=0.1, attention_dropout_rate=0.1)
  config.init = ml_collections.ConfigDict(dict(checkpoint="workdir/gpt_tiny", load_weights=True))
  # LoRA (Hu et al. 2021): rank 0 fine-tunes every weight; rank r > 0 freezes the pre-trained
  # ones and trains rank-r adapters on the attention projections (and the MLP's with mlp=True),
  # scaled by alpha / r, with the new head.
  config.lora = ml_collections.ConfigDict(dict(rank=0, alpha=16.0, mlp=False))
  config.fine_tuning = ml_collections.ConfigDict(
    dict(lm_coef=0.5, classifier_dropout_rate=0.1)  # §3.2, Eq. 5: lambda = 0.5; 0 turns it off
  )
  config.data = ml_collections.ConfigDict(
    dict(
      name="wiki_topics",
      tfds_data_dir="",
      # GPT-1's input transformation (§3.3): classification | entailment | similarity |
      # multiple_choice, and the features it reads (the others stay "").
      transformation="classification",
      text_field="text",  # the text; the premise or first text of a pair; a question's context
      text_pair_field="",  # entailment: the hypothesis; similarity: the second text
      choices_field="",  # multiple_choice: the answers (a sequence of texts)
      label_field="label",  # a ClassLabel; multiple_choice: the right answer's index; or a float
      num_choices=0,  # multiple_choice: answers per question
      train_split="train",
      eval_split="validation",
      test_split="test",
      max_seq_len=128,
      truncate=True,  # cut longer inputs (the count is logged); False: an error
      tokenizer="",  # "" -> init.checkpoint's
    )
  )
  config.train = bert_tiny_topics.get_config().train
  config.train.update(weight_decay=0.01, grad_clip_norm=1.0)
  del config.sample
  return config
