r"""Fine-tunes the pre-trained gpt_tiny on BIG-bench's epistemic_reasoning (2,000 premise /
hypothesis pairs, entailment or not), GPT-1's entailment transformation
[start] premise [delim] hypothesis [extract]; 2-core CPU.

The data is an optional extra: the `bigbench==1.0.0` source archive (358 MB), read from the tar
at run time (its task files carry a canary: never commit or redistribute their text). Without
it the run stops with the download command. Then, as configs/gpt_tiny_topics.py:

  python -m train.train --config=configs/gpt_tiny_entailment.py \
      --workdir=workdir/gpt_tiny_entailment

For VitaminC fact verification (54,668 claim / evidence pairs, 3-way):
--config.data.name=bigbench/vitaminc_fact_verification. Compared with BERT by
benchmarks/gpt_vs_bert.py.
Expected, measured with benchmarks/gpt_vs_bert.py's settings (64 tokens): test accuracy 0.803 /
0.750 (seeds 0 / 1), 0.846 / 0.819 with --config.fine_tuning.lm_coef=0, from scratch 0.617 /
0.888; the most frequent relation 0.628. About 6 minutes on one core.
"""

import ml_collections

from configs import gpt_tiny_topics


def get_config() -> ml_collections.ConfigDict:
  config = gpt_tiny_topics.get_config()
  config.data.update(
    name="bigbench/epistemic_reasoning",
    transformation="entailment",
    text_field="premise",
    text_pair_field="hypothesis",
  )
  return config
