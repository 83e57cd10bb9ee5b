r"""The Transformer big model of Vaswani et al. 2017 (Table 3, last row): d_model 1024, 16 heads,
d_ff 4096, dropout 0.3 (en-de), 300k steps (3.5 days on 8 P100 GPUs), the last 20 checkpoints
averaged (§6.1); the shared 37,000-token vocabulary (214,245,376 parameters; the paper's
Table 3 says 213M).

Command (needs accelerators and the network for WMT 2014):

  python -m train.train --config=configs/transformer_big.py --workdir=workdir/big

Expected: newstest2014 en-de BLEU 28.4 (paper, Table 2). Not run here (no accelerator).
"""

import ml_collections

from configs import transformer_base


def get_config() -> ml_collections.ConfigDict:
  config = transformer_base.get_config()
  config.model.update(num_heads=16, d_model=1024, d_ff=4096, dropout_rate=0.3)
  config.train.update(num_steps=300_000, max_to_keep=20, checkpoint_every=1000)
  config.decode.average_last = 20
  return config
