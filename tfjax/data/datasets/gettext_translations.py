"""TFDS builder `gettext_translations`: English-German and English-French sentence pairs taken
from the gettext message catalogs of Debian packages.

Free software ships human translations of its user interface as gettext catalogs (`.mo`
files); every message is an (English, translation) pair written by a person. The catalogs of
these Debian bookworm packages, fetched with `apt-get download` (the only data source reachable
offline here besides PyPI), make a small software-domain parallel corpus:

  gcc-12-locales        GCC's and cpplib's diagnostics and option help      GPL-3.0-or-later
  freeciv-data          the Freeciv game (rules, help, nations)             GPL-2.0-or-later
  gnucash-common        the GnuCash accounting program                      GPL-2.0-or-later
  gimp-data             GIMP and its plug-ins                               GPL-3.0-or-later
  libreoffice-l10n-de   LibreOffice's German UI (en-de only)                MPL-2.0
  libreoffice-l10n-fr   LibreOffice's French UI (en-fr only)                MPL-2.0

(each catalog carries its program's licence; see /usr/share/doc/<package>/copyright).

Each `*/<lang>/LC_MESSAGES/*.mo` of the language is read with Python's `gettext` (which handles
the catalog's charset), then cleaned (see `clean_pair`) and deduplicated to one translation per
English sentence. Measured on the bookworm packages (about 4 s to prepare one config from the
.deb files, 5 s with the download, on 2 CPU cores):

  config   singular messages   clean pairs   unique English   train / validation / test
  en-de    66,492              20,656        19,267           18,310 / 462 / 495
  en-fr    67,801              21,107        19,716           18,739 / 476 / 501

Most messages dropped are UI labels under 4 English words (28.9k) or hold placeholders or
markup (14.2k, mostly GCC's). LibreOffice (about 8.4k clean pairs a language) gives every
message a context: dropping those, as is usual, would leave 11.4k en-de / 11.8k en-fr.

Every English sentence falls in one split only (a SHA-256 of it: 95 / 2.5 / 2.5%). Examples
are {"en": text, "de" or "fr": text}, the layout of `wmt14_translate/de-en`, so the same input
code reads both. Importing this module registers the builder.
"""

import collections
import dataclasses
import gettext
import hashlib
import io
import re
from collections.abc import Iterable, Iterator

import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from tfjax.data.datasets.builder import OfflineBuilder
from tfjax.data.datasets.debian import builder_debs, deb_members

PACKAGES = (
  "gcc-12-locales",
  "freeciv-data",
  "gnucash-common",
  "gimp-data",
  "libreoffice-l10n-de",
  "libreoffice-l10n-fr",
)
LANGUAGES = ("de", "fr")

# An English side needs at least this many words: shorter messages are UI labels ("Open",
# "Line width") that teach little translation and swamp the sentences.
MIN_ENGLISH_WORDS = 4
# Longer messages (either side) are multi-paragraph help texts: their sentences are often
# reordered, merged or left out in translation, and they would not fit a small model's
# max_len (64 words is about 100 subword tokens).
MAX_WORDS = 64

# Placeholders and markup that a model cannot translate as text: printf (`%s`, `%<...%>` in
# GCC), brace and dollar formats (`{0}`, `$(ARG1)`, `$1`), tags and entities (`<b>`, `&lt;`),
# tabs (GCC's "option\thelp" columns) and backslash escapes. A pair holding any is dropped.
_PLACEHOLDER = re.compile(r"[%{}$\t\\]|<[^<>]*>|&#?\w+;")
# Freeciv's disambiguation prefix ("?plural:Danes", "?unitclass:Merchant"), which translators
# are meant to remove (some leave it, some translate it).
_QUALIFIER = re.compile(r"^\?[^:]+:")
# A keyboard-accelerator mark: `_` (GTK: GIMP, GnuCash, Freeciv, LibreOffice dialogs) or `~`
# (LibreOffice resources) before a letter: "_Open", "Modifi_er", "Ö~ffnen". `&` (Qt, Windows)
# is not used as one in these catalogs: it only appears as "K&R", "I&D", "&lt;".
_ACCELERATED_TOKEN = re.compile(r"[\w~]*[_~][^\W\d_][\w~]*")
_MID_WORD_UNDERSCORE = re.compile(r"(?<=[^\W_])_(?=[^\W\d_])")
_LEADING_UNDERSCORE = re.compile(r"(?<![\w])_(?=[^\W\d_])")
_TILDE = re.compile(r"~(?=[^\W\d_])")


def packages_for(language: str) -> tuple[str, ...]:
  """The packages holding catalogs of `language`: all but the other languages' l10n ones."""
  return tuple(
    p for p in PACKAGES if not p.startswith("libreoffice-l10n-") or p.endswith("-" + language)
  )


# ---------------------------------------------------------------------------------------------
# Reading the .deb files (fetched by `debian.builder_debs`).


def mo_files(deb_path: epath.PathLike, language: str) -> Iterator[tuple[str, bytes]]:
  """(path, content) of each `.../<language>/LC_MESSAGES/*.mo` in a .deb. Only the exact
  language directory: these packages have no `de_DE`-like variants (checked on bookworm)."""
  return deb_members(deb_path, rf"/{re.escape(language)}/LC_MESSAGES/[^/]+\.mo$")


def read_mo_pairs(
  mo_bytes: bytes, counts: collections.Counter | None = None
) -> list[tuple[str, str]]:
  """(msgid, msgstr) of each singular message of a .mo catalog, in catalog order.

  Drops the header (msgid "") and plural forms (their keys are (msgid, n) tuples in the
  catalog); removes a message context ("ctx\\x04msgid"): LibreOffice gives *every* message
  one (a widget id) and the English text is the same without it; we keep one translation per
  English sentence anyway. `counts`, if given, counts "plural", "header" and "context".
  """
  # The charset comes from the catalog's header.
  catalog = gettext.GNUTranslations(io.BytesIO(mo_bytes))._catalog
  counts = collections.Counter() if counts is None else counts
  pairs = []
  for msgid, msgstr in catalog.items():
    if isinstance(msgid, tuple):
      counts["plural"] += 1
    elif msgid == "":
      counts["header"] += 1
    else:
      if "\x04" in msgid:
        counts["context"] += 1
        msgid = msgid.split("\x04", 1)[1]
      pairs.append((msgid, msgstr))
  return pairs


# ---------------------------------------------------------------------------------------------
# Cleaning.


def _strip_accelerators(text: str, other: str) -> str:
  """Removes keyboard-accelerator marks. A mid-word `_` is kept where the whole word is found
  in the other side too: then it is a code identifier (`OS_task`, `clone_of`), copied
  untranslated, not a mark (which moves when the word is translated: "E_ditable" ->
  "_Editierbar"). Both sides are stripped alike, so a wrong guess still leaves them aligned."""
  other_tokens = set(_ACCELERATED_TOKEN.findall(other))

  def strip(match: re.Match) -> str:
    token = _TILDE.sub("", match.group(0))
    token = _LEADING_UNDERSCORE.sub("", token)
    if token.count("_") == 1 and token not in other_tokens:
      token = _MID_WORD_UNDERSCORE.sub("", token)
    return token

  return _ACCELERATED_TOKEN.sub(strip, text)


def _clean(english: str, translation: str) -> tuple[tuple[str, str] | None, str]:
  """(cleaned pair or None, the step that decided)."""
  english = _QUALIFIER.sub("", english)
  translation = _QUALIFIER.sub("", translation)
  if not english.strip() or not translation.strip():
    return None, "empty"
  if _PLACEHOLDER.search(english) or _PLACEHOLDER.search(translation):
    return None, "placeholder or markup"
  english, translation = (
    _strip_accelerators(english, translation),
    _strip_accelerators(translation, english),
  )
  english, translation = " ".join(english.split()), " ".join(translation.split())
  if english == translation:
    return None, "untranslated"
  if len(english.split()) < MIN_ENGLISH_WORDS:
    return None, f"English under {MIN_ENGLISH_WORDS} words"
  if max(len(english.split()), len(translation.split())) > MAX_WORDS:
    return None, f"over {MAX_WORDS} words"
  return (english, translation), "kept"


def clean_pair(english: str, translation: str) -> tuple[str, str] | None:
  """The cleaned (English, translation) of one message, or None if it is dropped.

  In order: removes Freeciv's "?qualifier:" prefix; drops empty messages and any with a
  placeholder or markup (`_PLACEHOLDER`); removes keyboard-accelerator marks ("_Open" ->
  "Open", "Ö~ffnen" -> "Öffnen"); collapses whitespace (newlines, French no-break spaces);
  drops untranslated messages (translation == English), English under MIN_ENGLISH_WORDS
  words and either side over MAX_WORDS words.
  """
  return _clean(english, translation)[0]


def dedupe(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
  """One translation per English sentence: the most frequent one, ties broken by the smallest
  in sorted order (deterministic, whatever the reading order). Sorted by English."""
  translations: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  for english, translation in pairs:
    translations[english][translation] += 1
  return [
    (english, min(counts, key=lambda t: (-counts[t], t)))
    for english, counts in sorted(translations.items())
  ]


def pairs_from_debs(deb_paths: Iterable[epath.PathLike], language: str) -> list[tuple[str, str]]:
  """The cleaned, deduplicated (English, translation) pairs of every catalog of `language`
  in the .deb files; logs how many messages each step keeps or drops."""
  counts: collections.Counter = collections.Counter()
  cleaned = []
  for deb_path in deb_paths:
    # The version is in the file name (<package>_<version>_<arch>.deb): logged, as the pairs
    # depend on it.
    logging.info("gettext_translations: reading %s", epath.Path(deb_path).name)
    catalogs = 0
    for _, mo_bytes in mo_files(deb_path, language):
      catalogs += 1
      counts["catalogs"] += 1
      for english, translation in read_mo_pairs(mo_bytes, counts):
        counts["singular messages"] += 1
        pair, step = _clean(english, translation)
        counts[step] += 1
        if pair is not None:
          cleaned.append(pair)
    if not catalogs:
      raise FileNotFoundError(
        f"{epath.Path(deb_path).name} holds no '{language}' .mo catalog (some distributions move "
        "translations to language-pack packages); use Debian's package of that name"
      )
  pairs = dedupe(cleaned)
  counts["unique English"] = len(pairs)
  logging.info("gettext_translations en-%s: %s", language, dict(counts))
  return pairs


def example_key(english: str) -> str:
  """A stable key: the English sentence is unique after `dedupe`."""
  return hashlib.sha256(english.encode("utf-8")).hexdigest()[:24]


# ---------------------------------------------------------------------------------------------
# The builder.


@dataclasses.dataclass(eq=False)
class GettextConfig(tfds.core.BuilderConfig):
  language: str = "de"  # The non-English side.


class GettextTranslations(OfflineBuilder):
  """Human translations of software messages (GCC, Freeciv, GnuCash, GIMP, LibreOffice) from the
  gettext catalogs of Debian packages: placeholders and markup dropped, accelerator marks
  removed, English of 4 to 64 words, one translation per English sentence. Splits 95/2.5/2.5
  from a SHA-256 of the English sentence."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: Debian bookworm catalogs, 95/2.5/2.5 by English."}
  BUILDER_CONFIGS = [
    GettextConfig(name=f"en-{lang}", language=lang, description=f"English-{name} pairs.")
    for lang, name in zip(LANGUAGES, ("German", "French"), strict=True)
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    "Optional: put the .deb files of `apt-get download <packages>` here to build offline; "
    f"packages: {' '.join(PACKAGES)}."
  )
  HOMEPAGE = "https://www.gnu.org/software/gettext/"
  LICENSE = "GPL-2.0-or-later / GPL-3.0-or-later / MPL-2.0, per package (see the docstring)"
  SPLIT_PER_MILLE = (950, 975)  # 95% train, 2.5% validation, 2.5% test.

  def _features(self) -> tfds.features.Translation:
    return tfds.features.Translation(languages=("en", self.builder_config.language))

  def _supervised_keys(self) -> tuple[str, str]:
    return ("en", self.builder_config.language)

  def _examples(self, dl_manager: tfds.download.DownloadManager) -> Iterator[tuple[str, str, dict]]:
    language = self.builder_config.language
    packages = packages_for(language)
    debs = builder_debs(packages, dl_manager, "gettext_debs")
    for english, translation in pairs_from_debs(debs, language):
      yield self.split_of(english), example_key(english), {"en": english, language: translation}
