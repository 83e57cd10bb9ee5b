r"""Fine-tunes the pre-trained bert_tiny on BIG-bench's epistemic_reasoning (premise /
hypothesis: entailment or not) as a sentence-pair classifier, [CLS] premise [SEP] hypothesis
[SEP] (Devlin et al. 2018, §4.1); the BERT side of configs/gpt_tiny_entailment.py, whose
docstring says how to get the optional BIG-bench archive.

  python -m train.train --config=configs/bert_tiny_entailment.py \
      --workdir=workdir/bert_tiny_entailment

Expected, measured with benchmarks/gpt_vs_bert.py's settings (64 tokens): test accuracy 0.904 /
0.840 (seeds 0 / 1; from scratch 0.904 / 0.904: the templated pairs are solvable from their
surface); the most frequent relation 0.628. About 5 minutes on one core.
"""

import ml_collections

from configs import bert_tiny_topics


def get_config() -> ml_collections.ConfigDict:
  config = bert_tiny_topics.get_config()
  config.data.update(
    name="bigbench/epistemic_reasoning", text_field="premise", text_pair_field="hypothesis"
  )
  return config
