r"""ViT-Ti/16 (5,717,416 parameters): d_model 192, 3 heads, MLP 768 (DeiT-Ti's size); the rest as
vit_b16.py (224x224, 16x16 patches, the 1000-class head: HF ViTForImageClassification's count).

  python -m train.train --config=configs/vit_ti16.py --workdir=workdir/vit_ti16 \
      --config.init.checkpoint=/path/to/an/hf/vit-t-16-checkpoint

Expected: not run here; it needs accelerators (see vit_b16.py).
"""

import ml_collections

from configs import vit_b16


def get_config() -> ml_collections.ConfigDict:
  config = vit_b16.get_config()
  config.model.update(num_layers=12, d_model=192, num_heads=3, d_ff=768)
  return config
