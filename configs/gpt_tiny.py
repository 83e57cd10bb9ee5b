r"""A tiny GPT-2-style model on the Wikipedia vital-articles corpus; trains on a 2-core CPU.

Command (prepares the corpus and tokenizer on first use, then trains and samples):

  python -m train.train --config=configs/gpt_tiny.py --workdir=workdir/gpt_tiny

Expected: about 9 minutes on 2 CPU cores; validation perplexity far below the unigram
perplexity of the same tokens (both are printed at the end), and a few samples that read like
Wikipedia lead sentences.
"""

import ml_collections

from tfjax.training import sharding

# This config shrunk to seconds, for the tests and benchmarks: "section.name" -> value, as on
# the command line (`--config.model.num_layers=1 ...`).
SECONDS_OVERRIDES = {
  "model.num_layers": 1,
  "model.d_model": 32,
  "model.num_heads": 2,
  "model.d_ff": 64,
  "model.max_len": 32,
  "model.vocab_size": 512,
  "data.seq_len": 32,
  "train.batch_size": 4,
  "train.warmup_steps": 2,
  "train.log_every": 1,
  "train.eval_every": 1000,  # eval at the last step only
  "train.eval_batches": 2,
  "sample.max_new_tokens": 4,
}


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = "lm"

  config.model = ml_collections.ConfigDict(
    dict(
      vocab_size=8192,
      max_len=128,
      num_layers=4,
      num_heads=4,
      d_model=256,
      d_ff=1024,
      activation="gelu_tanh",
      pre_norm=True,
      tie_embeddings=True,
      dropout_rate=0.0,
      attention_dropout_rate=0.0,
      layer_norm_epsilon=1e-5,
      init_std=0.02,
      scale_residual_init=True,
      dtype="float32",  # compute dtype: "bfloat16" for mixed precision
      remat_policy="none",
      scan_layers=False,
    )
  )

  config.data = ml_collections.ConfigDict(
    dict(
      name="wiki_vital_articles",  # or any TFDS text dataset, e.g. "lm1b"
      text_field="extract",  # "text" for lm1b
      train_split="train",
      eval_split="validation",
      tfds_data_dir="",  # "" -> TFDS default (~/tensorflow_datasets or $TFDS_DATA_DIR)
      cache_dir="",  # "" -> <tfds_data_dir>/tfjax_cache
      seq_len=128,
    )
  )

  config.train = ml_collections.ConfigDict(
    dict(
      seed=0,
      batch_size=16,
      num_steps=800,
      learning_rate=1e-3,
      warmup_steps=80,
      weight_decay=0.01,
      b1=0.9,
      b2=0.95,
      eps=1e-8,
      grad_clip_norm=1.0,
      log_every=10,
      eval_every=200,
      eval_batches=16,
      checkpoint_every=200,
      max_to_keep=3,
      on_nonfinite="stop",  # a NaN/inf loss or gradient stops the run; "skip": skip it
      max_consecutive_nonfinite=10,  # "skip" stops after this many skips in a row
      grad_accum_steps=1,  # micro-batches per update: the batch is split, the result the same
    )
  )

  # One device mesh with named axes; -1 takes the devices the others leave (README "Scaling out").
  config.parallel = ml_collections.ConfigDict(
    dict(
      mode="jit",  # "jit" (sharded jit, default), "shard_map" or "pmap"
      mesh=dict(data=-1, fsdp=1, tensor=1),
      # logical parameter axis -> mesh axes: embed -> fsdp, heads / mlp / vocab -> tensor
      # (tfjax/nn/partitioning.py names every parameter's axes)
      rules=sharding.DEFAULT_RULES,
      # Multi-host: enabled=True alone lets JAX find the cluster (TPU VMs, SLURM); or name the
      # coordinator, process count and this process's id. local_cpu_devices > 0 simulates CPUs.
      distributed=dict(
        enabled=False,
        coordinator_address="",
        num_processes=1,
        process_id=0,
        local_cpu_devices=0,
      ),
    )
  )

  config.sample = ml_collections.ConfigDict(
    dict(
      prompts=("The city of", "In mathematics,", "The French Revolution"),
      max_new_tokens=48,
      temperature=0.8,
      top_k=40,
      top_p=1.0,
      seed=0,
    )
  )
  return config
