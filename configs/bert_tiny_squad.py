r"""Fine-tunes the pre-trained bert_tiny for extractive question answering on SQuAD 1.1.

Command (pre-train first with configs/bert_tiny.py; TFDS downloads "squad" on first use, so a
network is needed once):

  python -m train.train --config=configs/bert_tiny_squad.py --workdir=workdir/bert_tiny_squad

Expected: not measured here (SQuAD needs the network; the task was tested offline on a small
synthetic SQuAD-format set). By the bert_tiny runs' speed, roughly 25 minutes of training on 2
CPU cores (1,500 steps of 32 windows of 128 tokens, about a third of an epoch), and a low F1
from a model this small. BERT-base reaches 80.8 EM / 88.5 F1 on the SQuAD 1.1 dev set
(Devlin et al. 2018, Table 2) with Google's 384 / 128 / 64 windows, 2 epochs at 3e-5, batch 32.
That recipe, on an imported HF BERT:

  python -m train.train --config=configs/bert_tiny_squad.py --workdir=workdir/bert_base_squad \
      --config.init.checkpoint=<dir with config.json, model.safetensors, vocab.txt> \
      --config.data.max_seq_len=384 --config.data.doc_stride=128 \
      --config.data.max_query_length=64 --config.train.learning_rate=3e-5 \
      --config.train.num_steps=5500 --config.train.warmup_steps=550

bert_tiny's position table has 128 entries, hence the smaller windows here (the paper's
max_seq_len 384 needs a model pre-trained with max_len >= 384). SQuAD 2.0: data.name=
"squad/v2.0" and data.version_2_with_negative=True (answers "" when [CLS] scores best).
"""

import ml_collections

from configs import bert_tiny


def get_config() -> ml_collections.ConfigDict:
  config = bert_tiny.get_config()
  config.task = "question_answering"
  # The architecture is taken from init.checkpoint; dropout, dtype and remat stay ours.
  config.init = ml_collections.ConfigDict(dict(checkpoint="workdir/bert_tiny", load_weights=True))
  # LoRA (Hu et al. 2021): rank 0 fine-tunes every weight; rank r > 0 freezes the pre-trained
  # ones and trains rank-r adapters on the attention projections (and the MLP's with mlp=True),
  # scaled by alpha / r, with the new head.
  config.lora = ml_collections.ConfigDict(dict(rank=0, alpha=16.0, mlp=False))
  config.data = ml_collections.ConfigDict(
    dict(
      name="squad",  # TFDS "squad" (v1.1); or "squad/v2.0" with version_2_with_negative=True
      tfds_data_dir="",
      id_field="id",
      question_field="question",
      context_field="context",
      answers_field="answers",  # a sequence of {text, answer_start}
      train_split="train",
      eval_split="validation",
      # Google's run_squad.py: 384, 128, 64; bert_tiny has 128 positions (see the docstring).
      max_seq_len=128,
      doc_stride=64,  # tokens between the starts of a context's windows
      max_query_length=32,  # longer questions are cut
      max_answer_length=30,  # tokens, when decoding
      version_2_with_negative=False,
      tokenizer="",  # "" -> init.checkpoint's; or a vocab.txt / sentencepiece .model
    )
  )
  # Devlin et al. §4.2: a few epochs at a small learning rate, warmup 10%, linear decay; a tiny
  # model takes a larger rate.
  config.train.update(
    batch_size=32,
    num_steps=1500,
    learning_rate=3e-4,
    warmup_steps=150,
    log_every=10,
    eval_every=1500,  # the whole dev split (~21k windows): only at the end
    eval_batches=1,  # unused: question answering evaluates the whole eval split
    checkpoint_every=500,
  )
  del config.sample
  return config
