r"""ViT-B/16 at 224x224 with the 1000-class ImageNet head (86,567,656 parameters, as HF
ViTForImageClassification and the original vit_jax): 12 layers, d_model 768, 12 heads, MLP 3072,
16x16 patches (a 14x14 grid, 196 tokens + [CLS]). Dosovitskiy et al. 2020, Table 1.

Commands (need an accelerator for useful speed; on CPU use the config with `jax.eval_shape`).
Fine-tune an imported HF checkpoint (e.g. google/vit-base-patch16-224, downloaded with its
config.json and model.safetensors) on CIFAR-10 at 224 (§3.2: the position embeddings are
resampled when the resolution changes; the head takes the dataset's 10 classes):

  python -m train.train --config=configs/vit_b16.py --workdir=workdir/vit_b16_cifar10 \
      --config.init.checkpoint=/path/to/vit-base-patch16-224

Expected: not run here (no accelerator, no ImageNet weights offline). The paper reports
98.1% CIFAR-10 accuracy fine-tuning ImageNet-21k weights at 384 (Table 5, ViT-B/16: 98.13).
"""

import ml_collections

from configs import vit_tiny


def get_config() -> ml_collections.ConfigDict:
  config = vit_tiny.get_config()
  config.model.update(
    image_size=224,
    patch_size=16,
    num_channels=3,
    num_classes=1000,
    num_layers=12,
    num_heads=12,
    d_model=768,
    d_ff=3072,
    activation="gelu",
    layer_norm_epsilon=1e-12,  # HF's; the original JAX checkpoints use 1e-6
    dropout_rate=0.0,
  )
  config.data.update(
    name="cifar10",  # fixed-size images; TFDS prepares it (needs the `tf` extra and a network)
    train_split="train",
    eval_split="test[:2000]",
    test_split="test",
    image_size=224,  # CIFAR's 32x32 resized on the device
    crop_padding=4,
    flip=True,
  )
  config.init.resample_posemb = True
  # Fine-tuning (§B.1.1): SGD with momentum 0.9 in the paper; AdamW at a small rate here.
  config.train.update(
    batch_size=512,
    num_steps=10_000,
    learning_rate=1e-4,
    warmup_steps=500,
    weight_decay=0.0,
    log_every=50,
    eval_every=1000,
    checkpoint_every=1000,
  )
  return config
