r"""GPT-1's fine-tuning recipe (Radford et al. 2018, §4.1) for a GPT-1-size model.

lr 6.25e-5, batch 32, 3 epochs, linear warmup over 0.2% of training then linear decay to 0,
dropout 0.1 (the classifier's too), L2 0.01 on the weight matrices, L = L_task + 0.5 L_LM.
init.checkpoint: a workdir of configs/gpt1.py or an HF GPT-1 (OpenAIGPTLMHeadModel) directory
with its vocab.json + merges.txt; the architecture is taken from it.

  python -m train.train --config=configs/gpt1_fine_tuning.py --workdir=workdir/gpt1_sentiment \
      --config.init.checkpoint=<GPT-1 directory>

num_steps is 3 epochs of the default data (Rotten Tomatoes, 10,184 training snippets):
3 x 10,184 / 32 = 955; for another set, 3 x its size / 32, and warmup_steps = 0.2% of that.
max_seq_len 128: the snippets are at most 78 GPT-2 tokens (the authors' code sizes the context
to the longest input + 3, at most 512); the LM logits of the auxiliary loss are [32, 128, V].
Expected: the paper's fine-tuned GPT-1 reaches 91.3% on SST-2 (Table 4); budget about
3 x 117M-parameter forward/backward passes over the training set.
"""

import ml_collections

from configs import gpt1, gpt_tiny_topics


def get_config() -> ml_collections.ConfigDict:
  config = gpt_tiny_topics.get_config()
  config.model = gpt1.get_config().model  # replaced by init.checkpoint's architecture
  config.init.checkpoint = "workdir/gpt1"
  config.data.update(name="rotten_tomatoes", max_seq_len=128)
  config.train.update(
    batch_size=32,
    num_steps=955,
    learning_rate=6.25e-5,
    schedule="linear",
    warmup_steps=2,  # 0.2% of 955
    weight_decay=0.01,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eval_every=320,
    checkpoint_every=320,
    log_every=10,
  )
  return config
