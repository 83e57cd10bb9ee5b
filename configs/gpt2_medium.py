r"""GPT-2 medium (354,823,168 parameters): 24 layers, d_model 1024, 16 heads;
the rest as gpt2_small.py.

  python -m train.gpt --config=configs/gpt2_medium.py --workdir=workdir/gpt2_medium \
      --config.data.name=lm1b --config.data.text_field=text

Expected: an accelerator with room for it (issue "Training that scales" adds FSDP and remat).
"""

import ml_collections

from configs import gpt2_small


def get_config() -> ml_collections.ConfigDict:
  config = gpt2_small.get_config()
  config.model.update(num_layers=24, d_model=1024, num_heads=16, d_ff=4 * 1024)
  return config
