r"""A tiny ViT on Fashion-MNIST (28x28 grayscale clothes, 10 classes), trained on a 2-core CPU.

Dosovitskiy et al. 2020 at toy scale: 7x7 patches (a 4x4 grid, 16 tokens + [CLS]), 4 pre-LN
layers of width 64, 4 heads, [CLS] pooling; random crops (2 pixels of padding) and flips.

Command (downloads the Debian package dataset-fashion-mnist with apt-get and prepares it on
first use; then trains, evaluates on the 10,000 test images and draws what the model attends to):

  python -m train.train --config=configs/vit_tiny.py --workdir=workdir/vit_tiny

Expected: about 11 minutes on 2 CPU cores (10,000 steps of 128 images; the progress bar's
tok/s counts images); test accuracy 0.887 (seed 0; softmax regression on the
pixels, configs/softmax_regression.py, gets 0.845 with the same budget). Shirts, T-shirts,
pullovers and coats are what it confuses (confusion_matrix.png); attention.png shows each
head's [CLS] attention and the rollout (Abnar & Zuidema 2020) over six test images.
The same budget trains the baselines: configs/cnn_tiny.py, configs/softmax_regression.py.
"""

import ml_collections

from configs import gpt_tiny

# This config shrunk to seconds, for the tests: "section.name" -> value.
SECONDS_OVERRIDES = {
  "model.num_layers": 1,
  "model.d_model": 16,
  "model.num_heads": 2,
  "model.d_ff": 32,
  "data.name": "mnist_5k",
  "data.flip": False,
  "data.eval_split": "validation",
  "train.batch_size": 8,
  "train.num_steps": 4,
  "train.warmup_steps": 1,
  "train.log_every": 1,
  "train.eval_every": 1000,
  "train.checkpoint_every": 2,
}


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = "image_classification"
  config.architecture = "vit"  # or "cnn", "linear": the baselines (their own model sections)

  config.model = ml_collections.ConfigDict(
    dict(
      image_size=28,
      patch_size=7,
      num_channels=1,
      num_classes=10,  # taken from the dataset
      num_layers=4,
      num_heads=4,
      d_model=64,
      d_ff=128,
      activation="gelu",
      dropout_rate=0.0,
      attention_dropout_rate=0.0,
      layer_norm_epsilon=1e-6,
      init_std=0.02,
      pooling="cls",
      pre_logits=False,
      dtype="float32",
      remat_policy="none",
      scan_layers=False,
    )
  )

  config.data = ml_collections.ConfigDict(
    dict(
      # or mnist_5k (offline, 5,000 digits: no flips), or any TFDS image set by name: mnist,
      # fashion_mnist, cifar10 (num_channels=3, image_size=32, patch_size=4) ...
      name="fashion_mnist_offline",
      tfds_data_dir="",  # "" -> TFDS default (~/tensorflow_datasets or $TFDS_DATA_DIR)
      image_field="image",
      label_field="label",
      train_split="train",  # e.g. "train[:5000]" for the first 5,000 images
      eval_split="test[:2000]",  # watched during training; nothing is selected on it
      test_split="test",
      image_size=0,  # 0: as stored; else resized (bilinear, on the device) to this square
      crop_padding=2,  # random crops of the image zero-padded by this many pixels (0: none)
      flip=True,  # random horizontal flips (clothes: yes; digits: no)
    )
  )
  config.init = ml_collections.ConfigDict(
    dict(
      checkpoint="",  # a ViT workdir of this task or an HF ViT directory to fine-tune from
      resample_posemb=False,  # True: move its position table to this model's patch grid
    )
  )
  # LoRA (Hu et al. 2021): rank 0 fine-tunes every weight; rank r > 0 freezes the pre-trained
  # ones and trains rank-r adapters on the attention projections (and the MLP's with mlp=True),
  # scaled by alpha / r, with the new head.
  config.lora = ml_collections.ConfigDict(dict(rank=0, alpha=16.0, mlp=False))

  # AdamW, warmup then cosine (the paper's §4.1), at DeiT's small-data strength: lr 1e-3 at
  # batch 128, decoupled weight decay 0.05 on every matrix (as tfjax's other recipes, the
  # position table included; DeiT leaves it and [CLS] undecayed).
  config.train = ml_collections.ConfigDict(
    dict(
      seed=0,
      batch_size=128,
      num_steps=10_000,
      schedule="warmup_cosine",
      learning_rate=1e-3,
      warmup_steps=500,
      weight_decay=0.05,
      b1=0.9,
      b2=0.999,
      eps=1e-8,
      grad_clip_norm=1.0,
      log_every=50,
      eval_every=2000,
      eval_batches=1,  # unused: the whole eval split is evaluated
      checkpoint_every=1000,
      max_to_keep=3,
      on_nonfinite="stop",
      max_consecutive_nonfinite=10,
      grad_accum_steps=1,
    )
  )
  config.parallel = gpt_tiny.get_config().parallel
  return config
