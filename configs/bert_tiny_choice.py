r"""Fine-tunes the pre-trained bert_tiny on multiple choice (wiki_next_sentence: which of 4
sentences follows a Wikipedia lead's first one), [CLS] context [SEP] answer_k [SEP] scored one
by one, a softmax over the answers (Devlin et al. 2018, §4.4); the BERT side of
configs/gpt_tiny_choice.py.

  python -m train.train --config=configs/bert_tiny_choice.py --workdir=workdir/bert_tiny_choice

Expected, measured with benchmarks/gpt_vs_bert.py's settings (200 steps, 48 tokens per
answer): test accuracy 0.366 / 0.361 (seeds 0 / 1; from scratch 0.247 / 0.270; chance 0.25),
about 11 minutes on one core. BIG-bench's social_iqa:
--config.data.name=bigbench/social_iqa --config.data.num_choices=3.
"""

import ml_collections

from configs import bert_tiny_topics


def get_config() -> ml_collections.ConfigDict:
  config = bert_tiny_topics.get_config()
  config.data.update(
    name="wiki_next_sentence",
    text_field="context",
    choices_field="choices",
    num_choices=4,
    max_seq_len=64,
  )
  return config
