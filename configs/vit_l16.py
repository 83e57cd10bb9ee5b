r"""ViT-L/16 (304,326,632 parameters): 24 layers, d_model 1024, 16 heads, MLP 4096; the rest as
vit_b16.py (224x224, 16x16 patches, the 1000-class head: HF ViTForImageClassification's count).

  python -m train.train --config=configs/vit_l16.py --workdir=workdir/vit_l16 \
      --config.init.checkpoint=/path/to/an/hf/vit-l-16-checkpoint

Expected: not run here; it needs accelerators (see vit_b16.py).
"""

import ml_collections

from configs import vit_b16


def get_config() -> ml_collections.ConfigDict:
  config = vit_b16.get_config()
  config.model.update(num_layers=24, d_model=1024, num_heads=16, d_ff=4096)
  return config
