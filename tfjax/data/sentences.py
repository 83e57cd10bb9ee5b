"""Sentence splitting of plain English prose (Wikipedia leads), by rule: no model, no download.

A sentence ends at ".", "!" or "?" (then closing quotes or brackets), whitespace, and a capital
or a digit (after an opening quote or bracket), and at every line break, except:

- after a title or a word that always goes on ("Dr. Watson", "St. Louis", "c. 1500", "e.g. The");
- after an initial, an initialism or a company suffix ("J. R. R. Tolkien", "the U.S. Army",
  "Apple Inc. shares"), unless a word that opens sentences follows ("in the U.S. In 1990",
  "World War I. The"): these do end sentences often;
- inside parentheses or square brackets ("(c. 1500. Later ...)" stays whole).

Rules miss some ends ("in the U.S. Due to ...") and quoted sentences split: good enough for
choosing lead sentences, not a parser.
"""

import re

# ., ! or ? (then closing quotes or brackets) and whitespace: a candidate end.
_CANDIDATE = re.compile(r"""[.!?]["'”’)\]]*\s+""")
# The start of what follows: opening marks, then a word (with the character after it).
_NEXT_WORD = re.compile(r"""["'“‘(\[]*(\w+)(.?)""")
# Words whose period never ends a sentence: a name or a number follows.
NEVER_ENDS = frozenset(
  "mr mrs ms dr prof st mt ft rev gen col lt capt sgt sen gov vs c ca cf no nos fig figs approx "
  "vol pp e.g i.e viz".split()
)
# Words whose period ends a sentence only before an opening word (as initials, initialisms).
NAME_PARTS = frozenset("jr sr inc ltd co corp bros".split())
_INITIALISM = re.compile(r"(?:[A-Za-z]\.)*[A-Za-z]")  # "J", "U.S", "a.m" (the last "." cut)
# Capitalised words that open sentences and hardly ever go on a name ("U.S. Army").
OPENERS = frozenset(
  "The It In This These That Those He She They We Its His Her Their There A An As At After "
  "Before During Since When While However Although Today On For By From With Many Most Some "
  "Other".split()
)


def _ends_here(line: str, start: int, match: re.Match) -> bool:
  """Whether the candidate end `match` of `line` ends the sentence begun at `start`."""
  following = _NEXT_WORD.match(line, match.end())
  if not following or not (following[1][0].isupper() or following[1][0].isdigit()):
    return False
  if line[match.start()] != ".":
    return True
  words = line[start : match.start()].split()
  word = words[-1].lstrip("\"'“‘([") if words else ""
  if word.lower() in NEVER_ENDS:
    return False
  if word.lower() in NAME_PARTS or _INITIALISM.fullmatch(word):
    return following[1] in OPENERS and following[2] != "."  # "E. T. A. Hoffmann": not "A"
  return True


def split_sentences(text: str) -> list[str]:
  """The sentences of `text`, stripped, in order (see the module docstring for the rules)."""
  sentences = []
  for line in text.split("\n"):
    start, depth, scanned = 0, 0, 0
    for match in _CANDIDATE.finditer(line):
      for char in line[scanned : match.end()]:  # the brackets open at the candidate
        if char in "([":
          depth += 1
        elif char in ")]":
          depth = max(depth - 1, 0)
      scanned = match.end()
      if depth == 0 and _ends_here(line, start, match):
        sentences.append(line[start : match.end()].strip())
        start = match.end()
    sentences.append(line[start:].strip())
  return [s for s in sentences if s]
