r"""GPT-2 xl (1,557,611,200 parameters): 48 layers, d_model 1600, 25 heads;
the rest as gpt2_small.py.

  python -m train.train --config=configs/gpt2_xl.py --workdir=workdir/gpt2_xl \
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
  config.model.update(num_layers=48, d_model=1600, num_heads=25, d_ff=4 * 1600)
  return config
