"""The translation task on the shared trainer: label smoothing against its formula, and a tiny
Transformer that learns a word-for-word cipher end to end, with resume, BLEU and clear errors."""

import json
import sys
from typing import Any

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import transformer_tiny
from tests.conftest import apply_overrides
from tests.tiny_datasets import tiny_builder
from tfjax.data.tokenizers.sentencepiece import SentencePieceTokenizer
from tfjax.inference.seq2seq import translate_texts
from tfjax.models.transformer import TransformerConfig
from tfjax.tasks import registry, translation
from tfjax.training import checkpoint, metrics

WORDS = "open save close the file window printer new old page text color image folder".split()
CIPHER = {w: w[::-1].upper() + "x" for w in WORDS}  # a made-up language, word for word


def sentence_pairs(seed: int, n: int) -> list[dict[str, str]]:
  """English sentences of 4–7 words and their word-for-word cipher ("xx")."""
  rng = np.random.default_rng(seed)
  pairs = []
  for _ in range(n):
    words = list(rng.choice(WORDS, size=rng.integers(4, 8)))
    pairs.append({"en": " ".join(words), "xx": " ".join(CIPHER[w] for w in words)})
  return pairs


# As wmt's layout: a Translation feature, train / validation / test splits.
tiny_builder(
  "tiny_translations",
  tfds.features.Translation(languages=("en", "xx")),
  {
    "train": lambda: sentence_pairs(0, 400),
    "validation": lambda: sentence_pairs(1, 16),
    "test": lambda: sentence_pairs(2, 12),
  },
)


TINY: dict[str, Any] = {
  "model.vocab_size": 320,
  "model.max_len": 32,
  "model.num_layers": 1,
  "model.num_heads": 2,
  "model.d_model": 32,
  "model.d_ff": 64,
  "model.dropout_rate": 0.0,
  "data.name": "tiny_translations",
  "data.target_lang": "xx",
  "data.max_len": 32,
  "train.batch_size": 8,
  "train.num_steps": 400,
  "train.warmup_steps": 50,
  "train.learning_rate": 0.5,
  "train.log_every": 50,
  "train.eval_every": 400,
  "train.checkpoint_every": 100,
  "train.max_to_keep": 3,
  "decode.average_last": 2,
  "decode.batch_size": 8,
}


def tiny_config(tmp_path, **overrides: Any):
  values = {**TINY, "data.tfds_data_dir": str(tmp_path / "tfds"), **overrides}
  return apply_overrides(transformer_tiny.get_config(), values)


# --- loss --------------------------------------------------------------------------------------


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothed_loss_is_kl_to_the_smoothed_targets(smoothing):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 3, 7)).astype(np.float32)
  targets = rng.integers(0, 7, size=(2, 3))
  weights = np.array([[1, 1, 0], [1, 0, 0]])
  loss, count = translation.label_smoothed_loss(logits, targets, weights, smoothing)
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  kl = []
  for b, t in zip(*np.nonzero(weights), strict=True):
    q = np.full(7, smoothing / 6)
    q[targets[b, t]] = 1 - smoothing
    kl.append(sum(qi * (np.log(qi) - lp) for qi, lp in zip(q, log_p[b, t], strict=True) if qi))
  assert count == 3
  np.testing.assert_allclose(loss, np.mean(kl), rtol=1e-5)


# --- end to end ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cipher_run(tmp_path_factory):
  """A tiny Transformer trained on the cipher: 200 steps, then resumed to 400."""
  tmp_path = tmp_path_factory.mktemp("cipher")
  workdir = tmp_path / "workdir"
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(metrics, "measure_matmul_peak_flops", lambda *a, **k: 1e11)
    registry.train(tiny_config(tmp_path, **{"train.num_steps": 200}), str(workdir))
    # Resumed to 400 steps: the data iterator and optimizer continue from step 200.
    final = registry.train(tiny_config(tmp_path), str(workdir))
  return workdir, final


def test_a_tiny_transformer_learns_a_cipher_and_reports_bleu(cipher_run):
  workdir, final = cipher_run
  assert final["step"] == 400
  assert final["averaged_steps"] == [300, 400]
  assert final["test_bleu_copy_source"] < 5  # no word of the source is in the target
  assert final["test_bleu_greedy"] > 40 and final["test_bleu_beam"] > 40
  assert final["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|")
  rows = (workdir / "test_translations.tsv").read_text().splitlines()
  assert rows[0] == "source\treference\tgreedy\tbeam" and len(rows) == 13
  assert set(json.loads((workdir / "bleu.json").read_text())) == {
    "copy the source",
    "greedy",
    "beam 4, alpha 0.6",
  }


def translate_command(workdir, *args: str) -> list[str]:
  flags = [f"--config.{k}={v}" for k, v in TINY.items() if k.startswith(("model.", "decode."))]
  return [
    sys.executable,
    "-m",
    "train.translate",
    "--config=configs/transformer_tiny.py",
    f"--workdir={workdir}",
    *flags,
    *args,
  ]


def test_cli_translates_sentences_with_the_averaged_checkpoints(cipher_run, run_cli):
  workdir, _ = cipher_run
  sentences = ["open the new file", "close the old window now"]
  done = run_cli(translate_command(workdir, "--beam_size=0", *sentences))
  assert done.returncode == 0, done.stderr[-3000:]
  config = tiny_config(workdir)
  model_config = TransformerConfig.from_config(config.model)
  params, _ = checkpoint.average_checkpoints(
    str(workdir),
    jax.eval_shape(lambda: translation.TranslationTask(config).init_params(jax.random.key(0))),
    last=2,
  )
  tokenizer = SentencePieceTokenizer.load(workdir / "tokenizer.model")
  expected = translate_texts(model_config, params, tokenizer, sentences, beam_size=0)
  lines = zip(sentences, expected, strict=True)
  assert done.stdout == "".join(f"{s}\n  -> {t}\n" for s, t in lines)
  words = " ".join(expected).split()
  assert sum(w in CIPHER.values() for w in words) >= len(words) // 2


def test_cli_refuses_a_workdir_of_another_vocabulary_or_none(cipher_run, run_cli, tmp_path):
  workdir, _ = cipher_run
  done = run_cli(translate_command(workdir, "--config.model.vocab_size=330", "open the file"))
  assert done.returncode == 1 and "another vocabulary" in done.stderr
  done = run_cli(translate_command(tmp_path, "open the file"))
  assert done.returncode == 1 and "train a model in" in done.stderr
  done = run_cli(translate_command(workdir))  # no sentences: it translates, never trains
  assert done.returncode != 0 and "to train a model, run python -m train.train" in done.stderr


def test_resuming_with_another_vocabulary_is_refused(tmp_path):
  workdir = tmp_path / "workdir"
  registry.train(
    tiny_config(
      tmp_path,
      **{
        "train.num_steps": 2,
        "train.checkpoint_every": 50,
        "decode.average_last": 1,
        "decode.num_test": 2,
      },
    ),
    str(workdir),
  )
  other = tiny_config(tmp_path, **{"model.vocab_size": 330, "train.num_steps": 4})
  with pytest.raises(ValueError, match="another vocabulary"):
    registry.train(other, str(workdir))


@pytest.mark.parametrize(
  "overrides, message",
  [
    ({"data.name": "gettext_translations/en-es"}, r"no language pair 'en-es'.*'en-de', 'en-fr'"),
    ({"data.target_lang": "de"}, r"data.target_lang='de' is not a language of"),
    ({"data.source_lang": "xx"}, "both 'xx'"),
  ],
)
def test_bad_language_pair_says_which_exist(tmp_path, overrides, message):
  with pytest.raises(ValueError, match=message):
    registry.train(tiny_config(tmp_path, **overrides), str(tmp_path / "w"))


@pytest.mark.parametrize(
  "overrides, message",
  [
    ({"data.max_len": 64}, "data.max_len=64 must be in"),
    ({"train.label_smoothing": 1.0}, "label_smoothing"),
    ({"decode.average_last": 9}, "average_last"),
    ({"decode.beam_size": 0}, "beam_size"),
  ],
)
def test_bad_config_is_refused_before_any_data(tmp_path, overrides, message):
  with pytest.raises(ValueError, match=message):
    registry.make_task(tiny_config(tmp_path, **overrides))
