r"""BERT-large (336,226,108 parameters with the MLM and NSP heads; 335,141,888 in the encoder and
pooler): 24 layers, d_model 1024, 16 heads, d_ff 4096; the rest as bert_base.py.

  python -m train.train --config=configs/bert_large.py --workdir=workdir/bert_large \
      --config.data.name=wikipedia/20230601.en --config.data.text_field=text

Expected: the paper pre-trained BERT-large in 4 days on 64 TPU chips (§A.2); add FSDP
(--config.parallel.mesh.fsdp=-1) and --config.model.remat_policy=full where memory is short.
Then fine-tuned: GLUE average 82.1 (Table 1), SQuAD v1.1 90.9 F1 (Table 2). Not run here.
"""

import ml_collections

from configs import bert_base


def get_config() -> ml_collections.ConfigDict:
  config = bert_base.get_config()
  config.model.update(num_layers=24, num_heads=16, d_model=1024, d_ff=4096)
  return config
