"""The TFDS builders of tfjax's offline datasets; importing this package registers all of them.

wiki_vital_articles (the default LM and BERT corpus), wiki_topics and rotten_tomatoes (text
classification), the GPT fine-tuning sets: bigbench (entailment: epistemic_reasoning and
vitaminc_fact_verification; multiple choice: social_iqa; summarisation: gem_xsum; from an
archive put in the manual dir), lee_similarity (document similarity) and wiki_next_sentence
(multiple choice), gettext_translations (translation), fashion_mnist_offline and mnist_5k
(image classification).
"""

from tfjax.data.datasets import (  # noqa: F401  (registers the builders with TFDS)
  bigbench,
  fashion_mnist_offline,
  gettext_translations,
  lee_similarity,
  mnist_5k,
  rotten_tomatoes,
  wiki_next_sentence,
  wiki_topics,
  wiki_vital_articles,
)
