"""Tests of reading files out of .deb packages and of finding or downloading the packages."""

import os
import subprocess

import pytest
import tensorflow_datasets as tfds

from tests.data.datasets.fake_debs import apt_calls, fake_apt_get, write_deb
from tfjax.data.datasets import debian

FILES = {
  "usr/share/locale/de/LC_MESSAGES/a.mo": b"A",
  "usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz": b"B",
  "usr/share/doc/p/copyright": b"C",
}


def test_write_deb_is_a_deb_for_dpkg(tmp_path):
  write_deb(tmp_path / "pkg_1.0_all.deb", {"usr/share/locale/de/LC_MESSAGES/a.mo": b"abc"})
  listing = subprocess.run(
    ["dpkg-deb", "--contents", str(tmp_path / "pkg_1.0_all.deb")],
    capture_output=True,
    text=True,
    check=True,
  ).stdout
  assert "./usr/share/locale/de/LC_MESSAGES/a.mo" in listing


@pytest.mark.parametrize("compression", ["xz", "gz", "bz2"])
def test_deb_members_are_the_files_whose_path_matches(tmp_path, compression):
  deb = tmp_path / "p_1_all.deb"
  write_deb(deb, FILES, compression)
  assert list(debian.deb_members(deb, r"/datasets/|\.mo$")) == [
    ("./usr/share/locale/de/LC_MESSAGES/a.mo", b"A"),
    ("./usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", b"B"),
  ]
  assert list(debian.deb_members(deb, "nothing-matches")) == []


def test_deb_members_falls_back_to_dpkg_deb_for_zstd(tmp_path):
  # Python cannot read zstd; dpkg-deb builds and reads it (Ubuntu's default compression).
  root = tmp_path / "root"
  (root / "DEBIAN").mkdir(parents=True)
  (root / "DEBIAN" / "control").write_text(
    "Package: p\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n"
  )
  mo_dir = root / "usr" / "share" / "locale" / "fr" / "LC_MESSAGES"
  mo_dir.mkdir(parents=True)
  (mo_dir / "p.mo").write_bytes(b"zstd catalog")
  deb = tmp_path / "p_1_all.deb"
  subprocess.run(
    ["dpkg-deb", "--root-owner-group", "-Zzstd", "-b", str(root), str(deb)],
    check=True,
    capture_output=True,
  )
  assert b"data.tar.zst" in deb.read_bytes()[:400]
  assert [content for _, content in debian.deb_members(deb, r"\.mo$")] == [b"zstd catalog"]


def test_a_file_that_is_not_a_deb_is_a_clear_error(tmp_path):
  (tmp_path / "p_1_all.deb").write_bytes(b"<html>Not Found</html>")
  with pytest.raises(ValueError, match="not a .deb file .*download it again"):
    list(debian.deb_members(tmp_path / "p_1_all.deb", "."))


def test_missing_apt_get_says_so(tmp_path, monkeypatch):
  monkeypatch.setenv("PATH", str(tmp_path))  # No apt-get there.
  with pytest.raises(FileNotFoundError, match="apt-get is not installed.*apt-get update"):
    debian.download_debs(["gimp-data"], tmp_path / "debs")


def test_several_versions_of_a_package_are_refused(tmp_path):
  for version in ("1.0", "1.1"):
    (tmp_path / f"gimp-data_{version}_all.deb").write_bytes(b"")
  with pytest.raises(FileNotFoundError, match="several versions"):
    debian.find_debs(["gimp-data"], [tmp_path])


def test_find_debs_takes_the_first_directory_holding_every_package(tmp_path):
  partial, full = tmp_path / "partial", tmp_path / "full"
  for directory, packages in ((partial, ["a"]), (full, ["a", "b"])):
    directory.mkdir()
    for package in packages:
      (directory / f"{package}_1_all.deb").write_bytes(b"")
  assert [p.name for p in debian.find_debs(["a", "b"], [tmp_path / "no", partial, full])] == [
    "a_1_all.deb",
    "b_1_all.deb",
  ]
  assert debian.find_debs(["a", "c"], [partial, full]) == []


def test_builder_debs_prefer_the_manual_dir_then_an_earlier_download_then_apt_get(
  tmp_path, monkeypatch
):
  store = tmp_path / "store"
  store.mkdir()
  write_deb(store / "p_2_all.deb", FILES)
  fake = tmp_path / "fake_apt"
  fake_apt_get(fake, store)
  monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
  manual = tmp_path / "manual"
  manual.mkdir()

  def debs(manual_dir):
    dl_manager = tfds.download.DownloadManager(
      download_dir=tmp_path / "downloads",
      manual_dir=manual_dir,
      manual_dir_instructions="Put p_*.deb here.",
      dataset_name="t",
    )
    return [p.relative_to(tmp_path).as_posix() for p in debian.builder_debs(["p"], dl_manager, "d")]

  assert debs(None) == ["downloads/d/p_2_all.deb"]  # apt-get download
  assert debs(manual) == ["downloads/d/p_2_all.deb"]  # manual dir empty: the earlier download
  assert apt_calls(fake) == ["download p"]
  write_deb(manual / "p_1_all.deb", FILES)
  assert debs(manual) == ["manual/p_1_all.deb"]
  assert apt_calls(fake) == ["download p"]
