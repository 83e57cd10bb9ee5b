"""Tests of the rule-based sentence splitter on the cases that trip simple ones."""

import pytest

from tfjax.data.sentences import split_sentences


@pytest.mark.parametrize(
  "text, sentences",
  [
    (
      "It rained. We stayed in! Why? Nobody knows.",
      ["It rained.", "We stayed in!", "Why?", "Nobody knows."],
    ),
    # Titles and words that always go on.
    (
      "Dr. Watson met Mr. Holmes at St. Mary's. They talked.",
      ["Dr. Watson met Mr. Holmes at St. Mary's.", "They talked."],
    ),
    (
      "It was built c. 1500 BC. Later, e.g. The Times said so.",
      ["It was built c. 1500 BC.", "Later, e.g. The Times said so."],
    ),
    # Initials and initialisms go on, unless a word that opens sentences follows.
    ("A novel by J. D. Salinger. It sold well.", ["A novel by J. D. Salinger.", "It sold well."]),
    (
      "It retells E.\u00a0T.\u00a0A. Hoffmann's story. The ballet followed.",
      ["It retells E.\u00a0T.\u00a0A. Hoffmann's story.", "The ballet followed."],
    ),
    (
      "He led the U.S. Army in Europe. He retired.",
      ["He led the U.S. Army in Europe.", "He retired."],
    ),
    (
      "A paper of Washington, D.C. It is widely read.",
      ["A paper of Washington, D.C.", "It is widely read."],
    ),
    (
      "It fell after World War I. In 1920, it split.",
      ["It fell after World War I.", "In 1920, it split."],
    ),
    (
      "Owned by News Corp. The paper is old. Apple Inc. Shares rose.",
      ["Owned by News Corp.", "The paper is old.", "Apple Inc. Shares rose."],
    ),
    ("Sold at 9 a.m. The shop closed.", ["Sold at 9 a.m.", "The shop closed."]),
    # Lists end with etc.: it ends sentences like any word.
    ("Colour, size, etc. Many vary.", ["Colour, size, etc.", "Many vary."]),
    # Inside brackets nothing ends; a bracketed sentence does.
    (
      "Obama (born 1961. Hawaii) is a lawyer. He ran.",
      ["Obama (born 1961. Hawaii) is a lawyer.", "He ran."],
    ),
    ("One [see Fig. 2. Also 3] here. Two.", ["One [see Fig. 2. Also 3] here.", "Two."]),
    ("(Second paragraph.) 3 items.", ["(Second paragraph.)", "3 items."]),
    ("A stray ) bracket. Then more.", ["A stray ) bracket.", "Then more."]),
    # Quotes, line breaks, lower case, non-ASCII capitals, decimals.
    (
      'He said "Yes." Then he left. "Go," she said.',
      ['He said "Yes."', "Then he left.", '"Go," she said.'],
    ),
    ("First line\n\nSecond. Third", ["First line", "Second.", "Third"]),
    (
      "It is 2.5 m long. the end. Éire is Ireland.",
      ["It is 2.5 m long. the end.", "Éire is Ireland."],
    ),
    (" \n ", []),
    (  # BERT pre-training's first test of it.
      'Dr. Watson met J. R. R. Tolkien in 1950. They talked! Did they? "Yes." Then, e.g. tea, '
      "at St. Mary's c. 5 pm.\nA new line\n\n  (Second paragraph.) 3 items.",
      [
        "Dr. Watson met J. R. R. Tolkien in 1950.",
        "They talked!",
        "Did they?",
        '"Yes."',
        "Then, e.g. tea, at St. Mary's c. 5 pm.",
        "A new line",
        "(Second paragraph.)",
        "3 items.",
      ],
    ),
  ],
)
def test_split_sentences_ends_only_sentences(text, sentences):
  assert split_sentences(text) == sentences
