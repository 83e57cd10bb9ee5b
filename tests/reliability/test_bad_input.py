"""Bad input gives one line that says what is wrong and how to fix it, and loses nothing.

Issue 11, item 6: a config file that cannot be loaded, an unknown --config key, a workdir with no
checkpoint (or none at all), an empty prompt, a missing tokenizer, a TFDS dir that cannot be
written, an HF directory without config.json or with pickled weights. A CLI's error is checked
through the CLI (status, one line on stderr, no traceback); the rest in-process.
"""

import contextlib
import errno
import hashlib
import os
import pathlib
import pickle
import shutil
import sys
from collections.abc import Iterator

import ml_collections
import pytest

from tests.reliability.mounts import MountRefused, mounted_tmpfs, tmpfs
from tfjax.data import cache, pipeline
from tfjax.hub import files, gpt2
from tfjax.hub.bert import load_bert
from tfjax.inference import generation, load
from train import config_errors

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = REPO_ROOT / "tests" / "golden"
TRAIN_TOOL = "python -m train.train"


def digest(root: pathlib.Path) -> str | None:
  """SHA-256 over every file's relative path and bytes under `root` (None: it does not exist)."""
  if not root.exists():
    return None
  sha = hashlib.sha256()
  for path in sorted(p for p in root.rglob("*") if p.is_file()):
    sha.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
  return sha.hexdigest()


def assert_one_line_error(done, *words: str) -> str:
  """The CLI failed with one `error:` line on stderr holding `words`; returns that line."""
  assert done.returncode != 0
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1, done.stderr[-3000:]
  assert lines[0].startswith("error: "), lines[0]
  for word in words:
    assert word in lines[0], (word, lines[0])
  return lines[0]


def sample_command(workdir: os.PathLike, *flags: str) -> list[str]:
  return [sys.executable, "-m", "train.sample", f"--workdir={workdir}", *flags]


def translate_command(workdir: os.PathLike, *args: str) -> list[str]:
  config = "--config=configs/transformer_tiny.py"
  return [sys.executable, "-m", "train.translate", config, f"--workdir={workdir}", *args]


# --- 1. a config file that cannot be loaded ------------------------------------------------------


@pytest.mark.parametrize(
  ("config", "contents", "words"),
  [
    ("nope.py", None, ["'nope.py' does not exist", "e.g. --config=configs/gpt_tiny.py"]),
    ("configs/gpt_tin.py", None, ["does not exist", "did you mean --config=configs/gpt_tiny.py?"]),
    ("configs", None, ["'configs' is not a file"]),
    ("{tmp}/c.py", "X = 1\n", ["c.py' defines no get_config()", "returning an ml_collections"]),
    ("{tmp}/c.py", "def get_config(:\n", ["c.py' is not valid Python", "(line 1)"]),
    ("", None, ["--config is empty"]),
  ],
  ids=["missing", "misspelled", "directory", "no_get_config", "syntax_error", "empty"],
)
def test_a_config_file_that_cannot_be_loaded_is_named_with_the_fix(
  tmp_path, monkeypatch, config, contents, words
):
  monkeypatch.chdir(REPO_ROOT)
  config = config.format(tmp=tmp_path)
  if contents is not None:
    pathlib.Path(config).write_text(contents)
  problem = config_errors.config_file_error(["train", f"--config={config}:arg", "--workdir=w"])
  assert problem is not None and "\n" not in problem
  for word in words:
    assert word in problem, (word, problem)


def test_every_shipped_config_and_ways_to_define_get_config_pass_the_check(tmp_path, monkeypatch):
  monkeypatch.chdir(REPO_ROOT)
  for path in sorted(pathlib.Path("configs").glob("[!_]*.py")):
    assert config_errors.config_file_error(["train", "--config", str(path)]) is None, path
  for source in [
    "from configs.gpt_tiny import get_config\n",
    "from configs.gpt_tiny import *\n",
    "try:\n  pass\nexcept ImportError:\n  pass\nelse:\n  get_config = lambda: None\n",
  ]:
    (tmp_path / "c.py").write_text(source)
    assert config_errors.config_file_error(["t", f"--config={tmp_path}/c.py"]) is None, source
  assert config_errors.config_file_error(["train", "--workdir=w"]) is None  # absl's to report


@pytest.mark.parametrize("tool", ["train.train", "train.translate"])
def test_a_cli_given_a_config_file_without_get_config_exits_with_one_line(tmp_path, run_cli, tool):
  (tmp_path / "c.py").write_text("X = 1\n")
  workdir = tmp_path / "w"
  done = run_cli([sys.executable, "-m", tool, f"--config={tmp_path}/c.py", f"--workdir={workdir}"])
  assert_one_line_error(done, "c.py' defines no get_config()")
  assert not workdir.exists()


# --- 2. an unknown --config. key (train.train: tests/training/test_trainer.py) -------------------


def test_translate_with_an_unknown_config_key_names_it_in_one_line(tmp_path, run_cli):
  done = run_cli(translate_command(tmp_path / "w", "--config.decode.beam_sise=2", "a sentence"))
  assert_one_line_error(done, "beam_sise", "the keys are those of the config file's get_config()")
  assert not (tmp_path / "w").exists()


# --- 3. a workdir with no checkpoint yet, or none at all -----------------------------------------


def test_sampling_a_workdir_without_a_checkpoint_is_one_line(tmp_path, trained_run, run_cli):
  workdir = tmp_path / "w"  # as a run stopped before its first checkpoint leaves it
  shutil.copytree(trained_run.workdir, workdir, ignore=shutil.ignore_patterns("checkpoints"))
  (workdir / "checkpoints").mkdir()
  before = digest(workdir)
  assert_one_line_error(run_cli(sample_command(workdir)), f"no checkpoint under {workdir}", "train")
  assert digest(workdir) == before


def test_translating_from_a_workdir_that_does_not_exist_is_one_line(tmp_path, run_cli):
  workdir = tmp_path / "nowhere"
  done = run_cli(translate_command(workdir, "Open the file."))
  assert_one_line_error(
    done, f"'{workdir}' does not exist", f"{TRAIN_TOOL} --config=configs/transformer_tiny.py"
  )
  assert not workdir.exists()


def test_loading_a_missing_path_or_a_file_says_which(tmp_path, trained_run):
  with pytest.raises(FileNotFoundError, match=r"nowhere' does not exist; give a tfjax language"):
    load.load(tmp_path / "nowhere", "gpt")
  with pytest.raises(FileNotFoundError, match=r"config.json' is a file, not a directory; give"):
    load.load(trained_run.workdir / "config.json", "gpt")
  (tmp_path / "w").mkdir()
  with pytest.raises(FileNotFoundError, match=f"'{tmp_path}/w' has no config.json; give"):
    load.load(tmp_path / "w", "transformer")


# --- 4. an empty prompt (one too long: tests/train/test_sample.py) -------------------------------


def test_sampling_an_empty_prompt_is_one_line(trained_run, run_cli):
  before = digest(trained_run.workdir)
  done = run_cli(sample_command(trained_run.workdir, "--prompt=The", "--prompt="))
  assert_one_line_error(done, "prompt '' encodes to no tokens", "give every prompt some text")
  assert done.stdout == ""
  assert digest(trained_run.workdir) == before


def test_complete_texts_names_the_empty_prompt(trained_run):
  config, params, tokenizer = load.load(trained_run.workdir, "gpt")
  with pytest.raises(ValueError, match="prompt '' encodes to no tokens"):
    generation.complete_texts(config, params, tokenizer, ["The", ""], max_new_tokens=2)


# --- 5. a tokenizer missing from (or damaged in) a workdir ---------------------------------------


def test_sampling_a_workdir_without_its_tokenizer_is_one_line(tmp_path, trained_run, run_cli):
  workdir = tmp_path / "w"
  shutil.copytree(trained_run.workdir, workdir)
  (workdir / "tokenizer.model").unlink()
  before = digest(workdir)
  done = run_cli(sample_command(workdir))
  assert_one_line_error(done, f"{workdir} has no tokenizer.model", f"run {TRAIN_TOOL} again")
  assert digest(workdir) == before


def test_a_damaged_tokenizer_says_so_and_how_to_write_it_again(tmp_path, trained_run):
  workdir = tmp_path / "w"
  shutil.copytree(trained_run.workdir, workdir)
  (workdir / "tokenizer.model").write_bytes(b"not a sentencepiece model")
  with pytest.raises(ValueError, match=r"tokenizer.model is not a SentencePiece model .*again"):
    load.load(workdir, "gpt")
  assert (workdir / "tokenizer.model").read_bytes() == b"not a sentencepiece model"


# --- 6. a TFDS data directory (or cache directory) that cannot be written -------------------------


def refuse_writes_under(monkeypatch, root: pathlib.Path) -> None:
  """Directory creation under `root` fails as on a read-only disk (for root, too)."""
  for name in ("makedirs", "mkdir"):
    real = getattr(os, name)

    def refusing(path, *args, _real=real, **kwargs):
      if pathlib.Path(path).resolve().is_relative_to(root.resolve()):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
      return _real(path, *args, **kwargs)

    monkeypatch.setattr(os, name, refusing)


@contextlib.contextmanager
def read_only_dir(monkeypatch, path: pathlib.Path) -> Iterator[pathlib.Path]:
  """An empty read-only tmpfs on `path`; where mounting is refused, an empty `path` under which
  directories cannot be made (so the test still checks the message)."""
  with contextlib.ExitStack() as stack:
    try:
      stack.enter_context(mounted_tmpfs(path, 1 << 20, read_only=True))
    except MountRefused:
      path.mkdir(parents=True)
      refuse_writes_under(monkeypatch, path)
    yield path


def test_an_unwritable_tfds_dir_without_the_dataset_names_the_dir_and_the_fix(
  tmp_path, monkeypatch
):
  data_dir = tmp_path / "read_only"
  with read_only_dir(monkeypatch, data_dir):
    data = ml_collections.ConfigDict(dict(name="wiki_vital_articles", tfds_data_dir=str(data_dir)))
    with pytest.raises(PermissionError) as error:
      pipeline.prepare_dataset(data)
  message = str(error.value)
  assert "\n" not in message and isinstance(error.value, OSError)  # the CLIs print OSError's line
  assert f"dataset 'wiki_vital_articles' is not prepared in {data_dir} yet" in message
  assert "choose a writable data.tfds_data_dir" in message


def test_an_unwritable_cache_dir_names_the_fix(tmp_path, monkeypatch):
  cache_dir = tmp_path / "read_only"
  with read_only_dir(monkeypatch, cache_dir):
    path = cache_dir / "tokens" / "train.npy"
    with pytest.raises(PermissionError, match=f"cannot write the cache file {path} .*choose a wri"):
      cache.write_atomically(path, lambda f: f.write(b"x"))


def test_the_read_only_tmpfs_refuses_writes(tmp_path):
  with tmpfs(tmp_path / "ro", 1 << 20, read_only=True) as ro:
    with pytest.raises(OSError) as error:
      (ro / "x").write_bytes(b"x")
    assert error.value.errno == errno.EROFS


# --- 7. an HF directory without config.json, or with pickled weights -----------------------------


class _Trap:
  """Unpickling this creates `marker`: proof that something unpickled the file."""

  def __init__(self, marker: pathlib.Path):
    self.marker = marker

  def __reduce__(self):
    return (open, (str(self.marker), "w"))


def hf_dir_with_a_pickle(tmp_path: pathlib.Path, golden: str) -> tuple[pathlib.Path, pathlib.Path]:
  """A copy of a golden HF directory whose weights are a booby-trapped pytorch_model.bin."""
  model_dir, marker = tmp_path / golden, tmp_path / "unpickled"
  shutil.copytree(GOLDEN / golden, model_dir)
  (model_dir / files.WEIGHTS_FILE).unlink()
  (model_dir / "pytorch_model.bin").write_bytes(pickle.dumps(_Trap(marker)))
  return model_dir, marker


@pytest.mark.parametrize(
  ("golden", "loaders"),
  [
    ("gpt2_tiny", [lambda d: load.load(d, "gpt"), gpt2.load_gpt2]),
    ("bert_tiny", [lambda d: load.load(d, "bert"), load_bert]),
  ],
  ids=["gpt2", "bert"],
)
def test_pickled_weights_are_refused_unread_with_the_conversion(tmp_path, golden, loaders):
  model_dir, marker = hf_dir_with_a_pickle(tmp_path, golden)
  before = digest(model_dir)
  for loader in loaders:
    with pytest.raises(FileNotFoundError) as error:
      loader(model_dir)
    message = str(error.value)
    assert "\n" not in message
    assert f"{model_dir} holds pytorch_model.bin, a pickle, which tfjax never loads" in message
    assert "save_pretrained(dir, safe_serialization=True)" in message
  assert not marker.exists() and digest(model_dir) == before


@pytest.mark.parametrize("golden", ["gpt2_tiny", "bert_tiny"])
def test_an_hf_directory_without_config_json_says_what_it_must_hold(tmp_path, golden):
  model_dir = tmp_path / golden
  shutil.copytree(GOLDEN / golden, model_dir)
  (model_dir / files.CONFIG_FILE).unlink()
  family, hub_loader = ("gpt", gpt2.load_gpt2) if golden == "gpt2_tiny" else ("bert", load_bert)
  with pytest.raises(FileNotFoundError, match=r"has no config.json; give .*\(config.json \+ mod"):
    load.load(model_dir, family)
  with pytest.raises(FileNotFoundError, match="config.json not found: an HF checkpoint directory"):
    hub_loader(model_dir)


def test_sampling_an_hf_directory_with_pickled_weights_is_one_line(tmp_path, run_cli):
  model_dir, marker = hf_dir_with_a_pickle(tmp_path, "gpt2_tiny")
  before = digest(model_dir)
  done = run_cli(sample_command(model_dir))
  assert_one_line_error(done, "pytorch_model.bin, a pickle", "safe_serialization=True")
  assert not marker.exists() and digest(model_dir) == before


# --- ViT (issue 12): images the model cannot take (the rest: tests/models/test_vit.py, ------------
# tests/tasks/test_image_classification_task.py, tests/data/test_images.py)


def test_a_vit_image_size_not_divisible_by_the_patch_is_one_line(tmp_path, run_cli):
  workdir = tmp_path / "w"
  command = [sys.executable, "-m", "train.train", "--config=configs/vit_tiny.py"]
  done = run_cli([*command, "--config.model.image_size=30", f"--workdir={workdir}"])
  assert_one_line_error(done, "model.image_size=30 is not divisible by model.patch_size=7")
  assert not workdir.exists()
