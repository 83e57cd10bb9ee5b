"""Tests of the gettext_translations TFDS builder on tiny .mo catalogs packed into fake .deb files.

Offline: a fake `apt-get` on PATH copies the prepared .deb files into its working directory, as
`apt-get download` does (fake_debs.py). The catalogs are written by `write_mo` (checked against
the standard library's reader), the .deb files by `fake_debs.write_deb`. The generic .deb
reading and fetching are tested in test_debian.py.
"""

import hashlib
import io
import os
import pathlib
import struct

import pytest
import tensorflow_datasets as tfds

from tests.data.datasets.fake_debs import apt_calls, fake_apt_get, write_deb
from tfjax.data.datasets import gettext_translations as gt

SPLITS = ("train", "validation", "test")
HEADER = "Content-Type: text/plain; charset={}\nPlural-Forms: nplurals=2; plural=(n != 1);\n"
LONG = " ".join(["word"] * 65)  # One word over the 64-word limit.


# -- writer of the .mo format ---------------------------------------------------------------------


def write_mo(messages: dict[str, str], charset: str = "UTF-8") -> bytes:
  """A GNU .mo catalog (gettext manual, "The Format of GNU MO Files"): little-endian header,
  tables of (length, offset) of the sorted msgids and of their msgstrs, then the NUL-terminated
  strings. A key "ctx\\x04msgid" has a context; "one\\x00many" -> "eins\\x00viele" is a plural."""
  messages = {"": HEADER.format(charset), **messages}
  items = sorted((k.encode(charset), v.encode(charset)) for k, v in messages.items())
  n = len(items)
  strings_start = 28 + 16 * n
  ids, strs, blob = [], [], b""
  for table, index in ((ids, 0), (strs, 1)):
    for item in items:
      table.append((len(item[index]), strings_start + len(blob)))
      blob += item[index] + b"\0"
  header = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, strings_start)
  tables = b"".join(struct.pack("<2I", *entry) for entry in ids + strs)
  return header + tables + blob


def test_write_mo_is_read_back_by_stdlib_gettext():
  import gettext

  mo = write_mo(
    {
      "Open the file": "Die Datei öffnen",
      "menu\x04Close": "Schließen",
      "a file\x00files": "eine\x00n",
    }
  )
  catalog = gettext.GNUTranslations(io.BytesIO(mo))
  assert catalog.gettext("Open the file") == "Die Datei öffnen"
  assert catalog.pgettext("menu", "Close") == "Schließen"
  assert catalog.ngettext("a file", "files", 1) == "eine"
  assert catalog.ngettext("a file", "files", 5) == "n"


# -- pure functions ------------------------------------------------------------------------------


def test_read_mo_pairs_drops_header_and_plurals_and_strips_contexts():
  mo = write_mo(
    {
      "Open the file": "Die Datei öffnen",
      "RID_STR_CLOSE\x04Close the window": "Das Fenster schließen",
      "one file\x00%d files": "eine Datei\x00%d Dateien",
    }
  )
  assert sorted(gt.read_mo_pairs(mo)) == [
    ("Close the window", "Das Fenster schließen"),
    ("Open the file", "Die Datei öffnen"),
  ]


def test_read_mo_pairs_decodes_the_catalog_charset():
  mo = write_mo({"Grey level of the image": "Graustufe des Bildes (öäü)"}, charset="ISO-8859-1")
  assert b"\xf6\xe4\xfc" in mo  # Latin-1 bytes, not UTF-8.
  assert gt.read_mo_pairs(mo) == [("Grey level of the image", "Graustufe des Bildes (öäü)")]


# (English, translation) -> the cleaned pair, or None when dropped; each row one rule.
CLEANING_CASES = [
  ("Warn about unused variables here.", "Hier vor unbenutzten Variablen warnen.", "same"),
  (
    "Show the\n  grid   lines on screen",
    "Gitterlinien\nauf dem Bildschirm anzeigen",
    ("Show the grid lines on screen", "Gitterlinien auf dem Bildschirm anzeigen"),
  ),
  (
    "Delete the file now ?",
    "Supprimer le fichier\xa0?",
    ("Delete the file now ?", "Supprimer le fichier ?"),
  ),  # Narrow no-break space.
  (
    "_Save the image as file",
    "Bild als Datei _speichern",
    ("Save the image as file", "Bild als Datei speichern"),
  ),
  (
    "E_ditable in read-only documents",
    "_Editierbar in schreibgeschützten Dokumenten",
    ("Editable in read-only documents", "Editierbar in schreibgeschützten Dokumenten"),
  ),
  (
    "Reset De~fault values of the page",
    "Standardwerte der Seite zurück~setzen",
    ("Reset Default values of the page", "Standardwerte der Seite zurücksetzen"),
  ),
  # An identifier found on both sides is code, not an accelerator: kept.
  (
    "Treat main as having attribute OS_task.",
    "main behandeln, als hätte es Attribut OS_task.",
    "same",
  ),
  ("Use K&R style for all functions", "K&R-Stil für alle Funktionen verwenden", "same"),
  (
    "?unit type:Settlers found new cities quickly",
    "Siedler gründen schnell neue Städte",
    ("Settlers found new cities quickly", "Siedler gründen schnell neue Städte"),
  ),
  (
    "?plural:Settlers found new cities quickly",
    "?plural:Siedler gründen neue Städte",
    ("Settlers found new cities quickly", "Siedler gründen neue Städte"),
  ),
  ("invalid operand %qs for this operator", "ungültiger Operand %qs für diesen Operator", None),
  ("Label $(ARG1) is not defined here", "Marke $(ARG1) ist hier nicht definiert", None),
  ("Use {name} as the new name", "{name} als neuen Namen verwenden", None),
  ("This is <b>bold</b> text here", "Das ist <b>fetter</b> Text hier", None),
  ("See &lt;https://gnucash.org&gt; for help", "Hilfe unter &lt;https://gnucash.org&gt;", None),
  ("-mmcu=MCU\tSelect the target MCU.", "-mmcu=MCU\tDie Ziel-MCU auswählen.", None),
  ("Permit \\u and \\U in identifiers", "\\u und \\U in Bezeichnern zulassen", None),
  ("Use the GNU assembler syntax", "Use the GNU assembler syntax", None),  # Untranslated.
  ("Save the _image here", "Save the image _here", None),  # Untranslated, but for marks.
  ("Open the file", "Die Datei öffnen", None),  # Three English words.
  ("Open the file now", "", None),
  (LONG, "kurz und knapp", None),
  ("This is short enough", LONG, None),
]


@pytest.mark.parametrize(("english", "translation", "expected"), CLEANING_CASES)
def test_clean_pair_rules(english, translation, expected):
  expected = (english, translation) if expected == "same" else expected
  assert gt.clean_pair(english, translation) == expected


def test_dedupe_keeps_the_most_frequent_translation_then_the_first_sorted():
  pairs = [
    ("Delete the layer", "B"),
    ("Delete the layer", "A"),
    ("Delete the layer", "B"),
    ("Remove all brushes", "Zeta"),
    ("Remove all brushes", "Alpha"),
  ]
  expected = [("Delete the layer", "B"), ("Remove all brushes", "Alpha")]
  assert gt.dedupe(pairs) == expected
  assert gt.dedupe(pairs[::-1]) == expected  # Whatever the reading order.


def test_packages_for_a_language_leave_out_the_other_libreoffice_translation():
  assert gt.packages_for("de") == (
    "gcc-12-locales",
    "freeciv-data",
    "gnucash-common",
    "gimp-data",
    "libreoffice-l10n-de",
  )
  assert "libreoffice-l10n-fr" in gt.packages_for("fr")
  assert "libreoffice-l10n-de" not in gt.packages_for("fr")


def test_mo_files_reads_exactly_the_language_directory(tmp_path):
  deb = tmp_path / "p_1_all.deb"
  write_deb(
    deb,
    {
      "usr/share/locale/de/LC_MESSAGES/a.mo": b"A",
      "usr/lib/libreoffice/program/resource/de/LC_MESSAGES/sw.mo": b"B",
      "usr/share/locale/de_CH/LC_MESSAGES/a.mo": b"C",
      "usr/share/locale/fr/LC_MESSAGES/a.mo": b"D",
      "usr/share/locale/de/LC_MESSAGES/a.po": b"E",
    },
  )
  assert sorted(content for _, content in gt.mo_files(deb, "de")) == [b"A", b"B"]


# -- the builder, end to end ---------------------------------------------------------------------

# 200 kept pairs, enough to fill every split (95 / 2.5 / 2.5 per mille).
NUMBERED_DE = {
  f"Insert page break number {i} here": f"Seitenumbruch {i} hier einfügen" for i in range(200)
}
NUMBERED_FR = {
  f"Insert page break number {i} here": f"Insérer le saut de page {i} ici" for i in range(200)
}
GCC_DE = {
  "Warn about unused variables in the code.": "Bei unbenutzten Variablen im Code warnen.",
  "invalid operand %qs for this operator": "ungültiger Operand %qs für diesen Operator",
  "Open": "Öffnen",
  "one file was removed from disk\x00%d files were removed": "eine Datei\x00%d Dateien",
  "Use the GNU assembler syntax": "Use the GNU assembler syntax",
  "Delete the selected layer now": "Die ausgewählte Ebene jetzt löschen",
  "Remove all the unused brushes": "Zuletzt alle unbenutzten Pinsel entfernen",
  LONG: "viel zu lang",
  **NUMBERED_DE,
}
GIMP_DE = {
  "layers-action\x04Delete the selected layer now": "Ausgewählte Ebene sofort löschen",
  "_Save the image as a file": "Bild als Datei _speichern",
  "Remove all the unused brushes": "Alle unbenutzten Pinsel entfernen",
}
GNUCASH_DE = {"Delete the selected layer now": "Ausgewählte Ebene sofort löschen"}
LIBREOFFICE_DE = {"STR_RESET\x04Reset De~fault values of the page": "Seitenwerte zurück~setzen"}
EXPECTED_DE = {
  "Warn about unused variables in the code.": "Bei unbenutzten Variablen im Code warnen.",
  "Delete the selected layer now": "Ausgewählte Ebene sofort löschen",  # 2 of 3 catalogs.
  "Remove all the unused brushes": "Alle unbenutzten Pinsel entfernen",  # Tie: sorted first.
  "Save the image as a file": "Bild als Datei speichern",
  "Reset Default values of the page": "Seitenwerte zurücksetzen",
  **NUMBERED_DE,
}
GCC_FR = {
  "Warn about unused variables in the code.": "Avertir des variables inutilisées.",
  **NUMBERED_FR,
}
LIBREOFFICE_FR = {"STR_RESET\x04Reset De~fault values of the page": "Réinitialiser la ~page"}
EXPECTED_FR = {
  "Warn about unused variables in the code.": "Avertir des variables inutilisées.",
  "Reset Default values of the page": "Réinitialiser la page",
  **NUMBERED_FR,
}


def _locale(language: str, domain: str) -> str:
  return f"usr/share/locale/{language}/LC_MESSAGES/{domain}.mo"


def _lo(language: str, domain: str) -> str:
  return f"usr/lib/libreoffice/program/resource/{language}/LC_MESSAGES/{domain}.mo"


@pytest.fixture(scope="module")
def deb_store(tmp_path_factory) -> pathlib.Path:
  """A .deb for each package, named as `apt-get download` names them."""
  store = tmp_path_factory.mktemp("debs")
  contents = {
    "gcc-12-locales": {
      _locale("de", "gcc-12"): write_mo(GCC_DE),
      _locale("fr", "gcc-12"): write_mo(GCC_FR),
      _locale("de_AT", "gcc-12"): write_mo({"Only in Austria, never read": "Nur in Österreich"}),
    },
    # Catalogs whose only messages are short labels (dropped): every package has one.
    "freeciv-data": {
      _locale("de", "freeciv"): write_mo({"Open": "Öffnen"}),
      _locale("fr", "freeciv"): write_mo({"Open": "Ouvrir"}),
    },
    "gnucash-common": {
      _locale("de", "gnucash"): write_mo(GNUCASH_DE, charset="ISO-8859-1"),
      _locale("fr", "gnucash"): write_mo({"Save": "Enregistrer"}),
    },
    "gimp-data": {
      _locale("de", "gimp20"): write_mo(GIMP_DE),
      _locale("fr", "gimp20"): write_mo({"Cancel": "Annuler"}),
    },
    "libreoffice-l10n-de": {_lo("de", "sw"): write_mo(LIBREOFFICE_DE)},
    "libreoffice-l10n-fr": {_lo("fr", "sw"): write_mo(LIBREOFFICE_FR)},
  }
  for package, files in contents.items():
    write_deb(store / f"{package}_1%3a1.0-1_all.deb", files)
  return store


def _read_examples(data_dir: pathlib.Path, name: str) -> dict[str, list[dict[str, str]]]:
  sources = tfds.data_source(name, data_dir=str(data_dir), download=False)
  return {
    split: [{k: v.decode("utf-8") for k, v in source[i].items()} for i in range(len(source))]
    for split, source in sources.items()
  }


@pytest.fixture(scope="module")
def built_de(deb_store, tmp_path_factory):
  """en-de built with the fake apt-get on PATH: (data dir, fake apt-get dir)."""
  data_dir = tmp_path_factory.mktemp("tfds")
  fake = tmp_path_factory.mktemp("fake_apt")
  fake_apt_get(fake, deb_store)
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    tfds.builder("gettext_translations/en-de", data_dir=str(data_dir)).download_and_prepare()
  return data_dir, fake


def test_builder_downloads_the_german_packages_with_apt_get(built_de):
  _, fake = built_de
  assert apt_calls(fake) == ["download " + " ".join(gt.packages_for("de"))]


def test_examples_are_the_cleaned_deduplicated_pairs(built_de):
  examples = _read_examples(built_de[0], "gettext_translations/en-de")
  got = {ex["en"]: ex["de"] for split in SPLITS for ex in examples[split]}
  assert got == EXPECTED_DE
  assert sum(len(examples[split]) for split in SPLITS) == len(EXPECTED_DE)  # No duplicates.
  assert all(set(ex) == {"en", "de"} for split in SPLITS for ex in examples[split])


def test_each_sentence_is_in_its_hash_split_and_the_splits_are_disjoint(built_de):
  examples = _read_examples(built_de[0], "gettext_translations/en-de")
  english = {split: {ex["en"] for ex in examples[split]} for split in SPLITS}
  assert not english["train"] & english["validation"]
  assert not english["train"] & english["test"]
  assert not english["validation"] & english["test"]
  for split in SPLITS:
    assert english[split]  # 205 sentences fill all three.
    for sentence in english[split]:
      bucket = int(hashlib.sha256(sentence.encode()).hexdigest()[:16], 16) % 1000
      assert split == ("train" if bucket < 950 else "validation" if bucket < 975 else "test")


def test_features_have_the_wmt_translate_layout(built_de):
  builder = tfds.builder("gettext_translations/en-de", data_dir=str(built_de[0]))
  features = builder.info.features
  assert isinstance(features, tfds.features.Translation)
  assert tuple(features.languages) == ("de", "en")  # Sorted, as wmt14_translate/de-en.
  assert builder.info.supervised_keys == ("en", "de")


def test_builder_reuses_debs_in_the_manual_dir_without_apt_get(deb_store, tmp_path, monkeypatch):
  manual = tmp_path / "manual"
  manual.mkdir()
  for deb in deb_store.glob("*.deb"):
    (manual / deb.name).write_bytes(deb.read_bytes())
  fake = tmp_path / "failing_apt"
  fake_apt_get(fake, deb_store, exit_code=100)
  monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
  data_dir = tmp_path / "tfds"
  tfds.builder("gettext_translations/en-fr", data_dir=str(data_dir)).download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual))
  )
  assert apt_calls(fake) == []
  examples = _read_examples(data_dir, "gettext_translations/en-fr")
  assert {ex["en"]: ex["fr"] for split in SPLITS for ex in examples[split]} == EXPECTED_FR


def test_failed_apt_get_says_what_failed_and_how_to_fix_it(deb_store, tmp_path, monkeypatch):
  fake = tmp_path / "failing_apt"
  fake_apt_get(fake, deb_store, exit_code=100)
  monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
  data_dir = tmp_path / "tfds"
  with pytest.raises(FileNotFoundError) as error:
    tfds.builder("gettext_translations/en-de", data_dir=str(data_dir)).download_and_prepare()
  message = str(error.value)
  assert f"apt-get download {' '.join(gt.packages_for('de'))} failed" in message
  assert "E: Unable to locate package gcc-12-locales" in message
  assert "run `apt-get update` (as root) first" in message
  assert str(data_dir / "downloads" / "gettext_debs") in message
  assert len(apt_calls(fake)) == 1


def test_a_package_without_the_language_is_a_clear_error(tmp_path):
  deb = tmp_path / "gimp-data_2.10_all.deb"
  write_deb(deb, {_locale("fr", "gimp20"): write_mo({"Cancel": "Annuler"})})
  with pytest.raises(FileNotFoundError, match="gimp-data_2.10_all.deb holds no 'de' .mo catalog"):
    gt.pairs_from_debs([deb], "de")
