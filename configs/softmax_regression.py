r"""The linear baseline of configs/vit_tiny.py: softmax regression on the raw pixels (7,850
parameters for 28x28x1 images and 10 classes), same data, optimizer and step budget, no
augmentation (a linear model on shifted images only blurs its templates).

Command:

  python -m train.train --config=configs/softmax_regression.py --workdir=workdir/softmax_regression

Expected: about 2 minutes on 2 CPU cores; test accuracy 0.845 (seed 0), the floor the ViT and
the CNN must beat.
"""

import ml_collections

from configs import vit_tiny


def get_config() -> ml_collections.ConfigDict:
  config = vit_tiny.get_config()
  config.architecture = "linear"
  config.model = ml_collections.ConfigDict(
    dict(image_size=28, num_channels=1, num_classes=10, dtype="float32")
  )
  config.data.update(crop_padding=0, flip=False)
  config.train.weight_decay = 0.0
  del config.init, config.lora
  return config
