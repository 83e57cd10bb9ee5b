r"""Instruction fine-tuning of the pre-trained gpt_tiny on a mixture of four real tasks rendered
as English prompts: summarise (wiki_vital_articles extract -> description), topic (wiki_topics),
translate_de (gettext_translations/en-de) and sentiment (rotten_tomatoes), as
`prompt <response> answer <eos>`, the loss on the answer alone; 2-core CPU.

Commands (pre-train first, as for configs/gpt_tiny_summarize.py; the second run is the
from-scratch baseline with the same architecture, tokenizer and budget):

  python -m train.train --config=configs/gpt_tiny.py --workdir=workdir/gpt_tiny \
      --config.train.batch_size=32 --config.train.num_steps=1500 --config.train.warmup_steps=150
  python -m train.train --config=configs/gpt_tiny_instructions.py \
      --workdir=workdir/gpt_tiny_instructions
  python -m train.train --config=configs/gpt_tiny_instructions.py \
      --workdir=workdir/gpt_tiny_instructions_scratch --config.init.load_weights=False

Each task trains on its first data.max_train_per_task pairs, each rendered with one of its
training templates; validation and test use only its held-out template (the last of each in
tfjax/data/instructions.py), so the test measures following an unseen phrasing. A subset:
--config.data.tasks=topic,sentiment. The end decodes each task's test split greedily
(decode.num_test caps it per task) into <workdir>/responses.jsonl, a "task" in each record, and
scores each task with its metric: test_summarise_rouge1/rouge2/rougeL, test_topic_exact_match,
test_sentiment_exact_match (lowercased, punctuation stripped at the ends) and
test_translate_de_bleu (sacrebleu). translate_de needs the Debian catalogs (the
gettext_translations builder's docstring: `apt-get download` on a machine with package lists).
Expected, measured (about 40 minutes on one core): validation perplexity 17.8 on the answers
(32.8 from scratch); test summarise ROUGE-1/2/L 17.0 / 5.8 / 16.7 (1.3 / 0.0 / 1.3), topic exact
match 63.1% (48.4), translate_de BLEU 0.30 (0.22), sentiment exact match 58.1% (57.1; the
majority answer 57.3). The README's instruction-mixture table says what these show.
"""

import ml_collections

from configs import gpt_tiny_summarize


def get_config() -> ml_collections.ConfigDict:
  config = gpt_tiny_summarize.get_config()  # the pre-trained model, prompt_response, its Adam
  config.data = ml_collections.ConfigDict(
    dict(
      name="instructions",  # the mixture of tfjax/data/instructions.py, not a TFDS name
      tasks="summarise,topic,translate_de,sentiment",  # its task names, in order
      max_train_per_task=3000,  # the first pairs of each task's train split
      tfds_data_dir="",
      max_seq_len=128,  # inputs per row: prompt, separator, response (EOS is only a target)
      separator="<response>",  # added after the vocabulary; EOS is the tokenizer's
      packing=True,  # several examples per row (segment ids); False: one per row, padded
      truncate=True,  # cut long prompts, drop too long responses (counted); False: errors
      cut_from="start",  # a long prompt loses its first tokens; "end": its last
      skip_empty=True,  # drop pairs with an empty side (articles without a description)
      tokenizer="",  # "" -> init.checkpoint's
    )
  )
  config.train.update(num_steps=1200, warmup_steps=120, eval_every=400, checkpoint_every=400)
  # German takes about 3 tokens a word with the English tokenizer; 40 leave 87 for the prompt.
  config.decode.update(max_new_tokens=40, num_test=0)  # num_test: per task; 0: the whole split
  return config
