r"""ViT-S/16 (22,050,664 parameters): d_model 384, 6 heads, MLP 1536; the rest as
vit_b16.py (224x224, 16x16 patches, the 1000-class head: HF ViTForImageClassification's count).

  python -m train.train --config=configs/vit_s16.py --workdir=workdir/vit_s16 \
      --config.init.checkpoint=/path/to/an/hf/vit-s-16-checkpoint

Expected: not run here; it needs accelerators (see vit_b16.py).
"""

import ml_collections

from configs import vit_b16


def get_config() -> ml_collections.ConfigDict:
  config = vit_b16.get_config()
  config.model.update(num_layers=12, d_model=384, num_heads=6, d_ff=1536)
  return config
