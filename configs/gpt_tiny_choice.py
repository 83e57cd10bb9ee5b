r"""Fine-tunes the pre-trained gpt_tiny on multiple choice: which of 4 sentences comes next after
a Wikipedia lead's first sentence (wiki_next_sentence: the true one and 3 from other articles of
the same topic; each article in its pre-training split), GPT-1's transformation
[start] context [delim] answer_k [extract], a softmax over the answers; 2-core CPU.

  python -m train.train --config=configs/gpt_tiny_choice.py --workdir=workdir/gpt_tiny_choice

For BIG-bench's social_iqa (1,954 questions, 3 answers; the optional bigbench archive, see
configs/gpt_tiny_entailment.py): --config.data.name=bigbench/social_iqa
--config.data.num_choices=3. Compared with BERT by benchmarks/gpt_vs_bert.py.
Expected, measured with benchmarks/gpt_vs_bert.py's settings (200 steps, 48 tokens per answer):
test accuracy 0.455 / 0.450 (seeds 0 / 1; from scratch 0.214 / 0.247; chance 0.25, the most
frequent answer position 0.298), about 14 minutes on one core.
"""

import ml_collections

from configs import gpt_tiny_topics


def get_config() -> ml_collections.ConfigDict:
  config = gpt_tiny_topics.get_config()
  config.data.update(
    name="wiki_next_sentence",
    transformation="multiple_choice",
    text_field="context",
    choices_field="choices",
    num_choices=4,
    max_seq_len=64,  # per answer: the first sentence and one candidate
  )
  return config
