r"""GPT-2 large (774,030,080 parameters): 36 layers, d_model 1280, 20 heads;
the rest as gpt2_small.py.

  python -m train.train --config=configs/gpt2_large.py --workdir=workdir/gpt2_large \
      --config.data.name=lm1b --config.data.text_field=text

Expected: not run here; it needs accelerators. Where one device's memory is short, shard the
weights and Adam state with FSDP (--config.parallel.mesh.data=1 --config.parallel.mesh.fsdp=-1)
and recompute activations (--config.model.remat_policy=dots_no_batch
--config.model.scan_layers=True), as README "Scaling out" shows.
"""

import ml_collections

from configs import gpt2_small


def get_config() -> ml_collections.ConfigDict:
  config = gpt2_small.get_config()
  config.model.update(num_layers=36, d_model=1280, num_heads=20, d_ff=4 * 1280)
  return config
