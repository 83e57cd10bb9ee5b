r"""Fine-tunes the pre-trained gpt_tiny to write an article's short description from its lead:
`extract <summarize> description <eos>` on wiki_vital_articles, the loss on the description
alone; 2-core CPU.

Commands (pre-train first, as for configs/gpt_tiny_topics.py; the second run is the
from-scratch baseline with the same architecture, tokenizer and budget):

  python -m train.train --config=configs/gpt_tiny.py --workdir=workdir/gpt_tiny \
      --config.train.batch_size=32 --config.train.num_steps=1500 --config.train.warmup_steps=150
  python -m train.train --config=configs/gpt_tiny_summarize.py --workdir=workdir/gpt_tiny_summarize
  python -m train.train --config=configs/gpt_tiny_summarize.py \
      --workdir=workdir/gpt_tiny_summarize_scratch --config.init.load_weights=False

Articles without a description are dropped (counted in the log); an extract too long for the
128-token rows keeps its beginning, the separator and the description (`data.cut_from=end`:
counted too): a lead says first what the article is, as the lead-N baseline shows
(`--config.data.cut_from=start` keeps the extract's last sentences instead).
`--config.data.packing=False` lays one example per row, padded, instead of packing several.
The end writes the test split's greedy descriptions to <workdir>/responses.jsonl. To fine-tune
an imported HF GPT-2 or GPT-1 instead: --config.init.checkpoint=<its directory> (and
--config.data.max_seq_len up to its context).
Expected, measured (benchmarks/summarization.py runs this config): validation perplexity 24.1
and token accuracy 0.402 on the descriptions, test ROUGE-1/2/L 22.5 / 7.8 / 22.0 greedy (23.3 /
8.8 / 22.9 with --config.decode.beam_size=4), 2 of 476 exact; from scratch 111.5, 0.275 and
7.7 / 2.3 / 7.4; the lead-6 baseline 19.6 / 6.7 / 17.9. About 9 minutes on one core.
"""

import ml_collections

from configs import gpt_tiny_topics


def get_config() -> ml_collections.ConfigDict:
  config = gpt_tiny_topics.get_config()  # the pre-trained model, dropout 0.1, fine-tuning's Adam
  config.task = "prompt_response"
  del config.fine_tuning
  config.data = ml_collections.ConfigDict(
    dict(
      name="wiki_vital_articles",
      tfds_data_dir="",
      prompt_field="extract",
      response_field="description",
      train_split="train",
      eval_split="validation",
      test_split="test",  # "" decodes nothing at the end
      max_seq_len=128,  # inputs per row: prompt, separator, response (EOS is only a target)
      separator="<summarize>",  # added after the vocabulary; EOS is the tokenizer's
      packing=True,  # several examples per row (segment ids); False: one per row, padded
      truncate=True,  # cut long prompts, drop too long responses (counted); False: errors
      cut_from="end",  # a long prompt loses its last tokens; "start": its first
      skip_empty=True,  # drop pairs with an empty side (counted); False: an error
      tokenizer="",  # "" -> init.checkpoint's
    )
  )
  config.train.update(batch_size=16, num_steps=600, warmup_steps=60, eval_every=200,
                      checkpoint_every=200)  # fmt: skip
  config.decode = ml_collections.ConfigDict(
    dict(
      max_new_tokens=24,
      batch_size=32,
      num_test=0,  # 0: the whole test split
      beam_size=1,  # > 1: beam search (length_penalty: GNMT's alpha)
      length_penalty=0.6,
      temperature=0.0,  # 0: greedy; else sampled, with top_k / top_p and the seed
      top_k=0,
      top_p=1.0,
      no_repeat_ngram_size=0,
      repetition_penalty=1.0,
      seed=0,
    )
  )
  return config
