r"""GPT-2 large (774,030,080 parameters): 36 layers, d_model 1280, 20 heads;
the rest as gpt2_small.py.

  python -m train.gpt --config=configs/gpt2_large.py --workdir=workdir/gpt2_large \
      --config.data.name=lm1b --config.data.text_field=text

Expected: an accelerator with room for it (issue "Training that scales" adds FSDP and remat).
"""

import ml_collections

from configs import gpt2_small


def get_config() -> ml_collections.ConfigDict:
  config = gpt2_small.get_config()
  config.model.update(num_layers=36, d_model=1280, num_heads=20, d_ff=4 * 1280)
  return config
