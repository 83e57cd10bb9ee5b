r"""The Transformer base model of Vaswani et al. 2017 (Table 3, first row): N=6 layers each for
the encoder and decoder, d_model 512, 8 heads (d_k = d_v = 64), d_ff 2048, dropout 0.1,
label smoothing 0.1, a shared 37,000-token vocabulary (63,082,496 parameters; the paper's
Table 3 says 65M).

Recipe (§5): batches of about 25,000 source and 25,000 target tokens (here 96 packed rows x
256 tokens), Adam(0.9, 0.98, 1e-9), lr = d_model^-0.5 * min(step^-0.5, step * 4000^-1.5),
100k steps (12 hours on 8 P100 GPUs), the last 5 checkpoints averaged, beam 4, alpha 0.6,
outputs up to input length + 50.

Command (needs accelerators, and the network for WMT 2014, which TFDS prepares with
TensorFlow: `pip install -e .[tf]`):

  python -m train.train --config=configs/transformer_base.py --workdir=workdir/base

Expected: newstest2014 en-de BLEU 27.3 (paper, Table 2; sacrebleu's detokenized score runs
lower than the paper's tokenized BLEU). Not run here (no accelerator was available).

Table 3's variations are overrides of this file; `TABLE_3` below lists them with the paper's
parameter counts, e.g. row (A) with one head:

  python -m train.train --config=configs/transformer_base.py --workdir=workdir/a1 \
      --config.model.num_heads=1 --config.model.d_k=512 --config.model.d_v=512
"""

import ml_collections
from ml_collections import config_dict

from tfjax.training import sharding

# Table 3 of Vaswani et al. 2017: row -> (config overrides, the paper's parameter count in
# millions, None where the table leaves it blank).
TABLE_3 = {
  "A: h=1, d_k=d_v=512": ({"model.num_heads": 1, "model.d_k": 512, "model.d_v": 512}, None),
  "A: h=4, d_k=d_v=128": ({"model.num_heads": 4, "model.d_k": 128, "model.d_v": 128}, None),
  "A: h=16, d_k=d_v=32": ({"model.num_heads": 16, "model.d_k": 32, "model.d_v": 32}, None),
  "A: h=32, d_k=d_v=16": ({"model.num_heads": 32, "model.d_k": 16, "model.d_v": 16}, None),
  "B: d_k=16": ({"model.d_k": 16, "model.d_v": 64}, 58),
  "B: d_k=32": ({"model.d_k": 32, "model.d_v": 64}, 60),
  "C: N=2": ({"model.num_layers": 2}, 36),
  "C: N=4": ({"model.num_layers": 4}, 50),
  "C: N=8": ({"model.num_layers": 8}, 80),
  "C: d_model=256, d_k=d_v=32": ({"model.d_model": 256}, 28),
  "C: d_model=1024, d_k=d_v=128": ({"model.d_model": 1024}, 168),
  "C: d_ff=1024": ({"model.d_ff": 1024}, 53),
  "C: d_ff=4096": ({"model.d_ff": 4096}, 90),
  "D: P_drop=0.0": ({"model.dropout_rate": 0.0}, None),
  "D: P_drop=0.2": ({"model.dropout_rate": 0.2}, None),
  "D: eps_ls=0.0": ({"train.label_smoothing": 0.0}, None),
  "D: eps_ls=0.2": ({"train.label_smoothing": 0.2}, None),
  "E: learned positions": ({"model.positions": "learned"}, None),
}


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = "translation"

  config.model = ml_collections.ConfigDict(
    dict(
      vocab_size=37000,
      max_len=256,
      num_layers=6,
      num_heads=8,
      d_model=512,
      d_ff=2048,
      d_k=config_dict.placeholder(int),  # None: d_model / num_heads
      d_v=config_dict.placeholder(int),
      activation="relu",
      positions="sinusoidal",  # or "learned" (Table 3, row E)
      dropout_rate=0.1,
      attention_dropout_rate=0.0,
      layer_norm_epsilon=1e-6,
      dtype="float32",  # compute dtype: "bfloat16" for mixed precision
      remat_policy="none",
    )
  )

  config.data = ml_collections.ConfigDict(
    dict(
      name="wmt14_translate/de-en",  # or the offline "gettext_translations/en-de"
      source_lang="en",
      target_lang="de",
      train_split="train",
      eval_split="validation",
      test_split="test",
      tfds_data_dir="",  # "" -> TFDS default (~/tensorflow_datasets or $TFDS_DATA_DIR)
      cache_dir="",  # "" -> <tfds_data_dir>/tfjax_cache
      max_len=256,  # tokens per packed row; longer sentences are cut (counted in the log)
      truncate=True,  # False: a sentence longer than max_len - 1 tokens is an error
    )
  )

  config.train = ml_collections.ConfigDict(
    dict(
      seed=0,
      batch_size=96,
      num_steps=100_000,
      schedule="inverse_sqrt",
      learning_rate=1.0,  # multiplier on §5.3's formula: 1.0 is the paper
      warmup_steps=4000,
      b1=0.9,
      b2=0.98,
      eps=1e-9,
      weight_decay=0.0,
      grad_clip_norm=0.0,  # the paper does not clip
      label_smoothing=0.1,
      log_every=100,
      eval_every=2000,
      eval_batches=16,
      checkpoint_every=2000,
      max_to_keep=5,
      on_nonfinite="stop",  # a NaN/inf loss or gradient stops the run; "skip": skip it
      max_consecutive_nonfinite=10,  # "skip" stops after this many skips in a row
      grad_accum_steps=1,
    )
  )

  config.parallel = ml_collections.ConfigDict(
    dict(
      mode="jit",
      mesh=dict(data=-1, fsdp=1, tensor=1),
      rules=sharding.DEFAULT_RULES,
      distributed=dict(
        enabled=False,
        coordinator_address="",
        num_processes=1,
        process_id=0,
        local_cpu_devices=0,
      ),
    )
  )

  config.decode = ml_collections.ConfigDict(
    dict(
      beam_size=4,
      alpha=0.6,  # length penalty ((5 + length) / 6)^alpha (Wu et al. 2016)
      extra_len=50,  # outputs up to input length + 50 tokens
      batch_size=32,
      average_last=5,  # checkpoints averaged for decoding (1: the last one alone)
      num_test=0,  # 0: the whole test split
    )
  )
  return config
