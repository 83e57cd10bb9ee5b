"""What every BERT fine-tuning task shares, on tiny configs: the start from our pre-training
workdir or an HF directory (its encoder, architecture and tokenizer), resume, and clear errors."""

import json
import shutil

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from configs import bert_tiny_sentiment, bert_tiny_topics
from tests.tasks.bert_runs import (
  GOLDEN,
  assert_trees_equal,
  fine_tuning_config,
  minilm_dir,
  pretrained_params,
  start_params,
  tree_digest,
)
from tfjax.data.tokenizers.bert import load_bert_tokenizer
from tfjax.hub import bert as bert_hub
from tfjax.hub import files
from tfjax.tasks import registry


def test_fine_tuning_starts_from_the_pretrained_encoder_and_a_fresh_classifier(
  tfds_dir, pretrained
):
  fresh, initial, _ = start_params(fine_tuning_config(tfds_dir, pretrained.workdir))
  assert set(initial) == {"bert", "classifier"}
  assert_trees_equal(initial["bert"], pretrained_params(pretrained)["bert"])
  assert_trees_equal(initial["classifier"], fresh["classifier"])


def test_fine_tuning_from_scratch_keeps_the_fresh_encoder(tfds_dir, pretrained):
  config = fine_tuning_config(tfds_dir, pretrained.workdir, **{"init.load_weights": False})
  fresh, initial, _ = start_params(config)
  assert_trees_equal(initial, fresh)
  pretrained_shapes = jax.tree.map(np.shape, pretrained_params(pretrained)["bert"])
  assert jax.tree.map(np.shape, initial["bert"]) == pretrained_shapes  # its architecture still


def test_fine_tuning_takes_the_architecture_from_the_checkpoint(pretrained, fine_tuned):
  default = bert_tiny_topics.get_config().model
  ours = pretrained.config.model
  changed = ("d_model", "num_layers", "d_ff", "max_len", "vocab_size", "num_heads")
  assert all(default[k] != ours[k] for k in changed)
  saved = json.loads((fine_tuned.workdir / "config.json").read_text())["model"]
  assert {k: saved[k] for k in changed} == {k: ours[k] for k in changed}
  assert saved["dropout_rate"] == default.dropout_rate  # not architecture: the run's own


def test_fine_tuning_from_the_hf_minilm_starts_from_its_encoder(tmp_path, tfds_dir):
  hf_dir = minilm_dir()
  # A whole run compiles MiniLM (22M parameters) twice, ~20 s: its start is what differs.
  config = fine_tuning_config(tfds_dir, hf_dir, bert_tiny_sentiment, **{"data.max_seq_len": 16})
  fresh, initial, data = start_params(config)
  _, encoder, head = bert_hub.load_bert(hf_dir)
  assert head == "model"
  assert_trees_equal(initial["bert"], encoder)
  assert_trees_equal(initial["classifier"], fresh["classifier"])
  # What a run saves beside its checkpoints: MiniLM's WordPiece vocabulary.
  data.save_files(str(tmp_path))
  assert (tmp_path / "vocab.txt").read_text() == (hf_dir / "vocab.txt").read_text()
  assert load_bert_tokenizer(tmp_path).vocab_size == 30522


def test_fine_tuning_takes_the_encoder_of_an_hf_checkpoint_with_another_head(tmp_path, tfds_dir):
  # A BertForSequenceClassification directory: our tiny golden BertModel plus a classifier
  # (HF names), and a 100-token vocab.txt.
  hf_dir = tmp_path / "hf_classifier"
  shutil.copytree(GOLDEN / "bert_tiny_model", hf_dir)
  tensors = load_file(hf_dir / files.WEIGHTS_FILE)
  tensors["classifier.weight"] = np.ones((3, 32), np.float32)
  tensors["classifier.bias"] = np.ones((3,), np.float32)
  save_file(tensors, str(hf_dir / files.WEIGHTS_FILE), metadata={"format": "pt"})
  letters = list("abcdefghijklmnopqrstuvwxyz")
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{c}" for c in letters)]
  words = "the a film movie is of and to it this that in with as for but its an on be not good"
  vocab += [*words.split(), *(f"word{i}" for i in range(100))][: 100 - len(vocab)]
  (hf_dir / "vocab.txt").write_text("".join(f"{t}\n" for t in vocab))

  config = fine_tuning_config(tfds_dir, hf_dir, bert_tiny_sentiment, **{"data.max_seq_len": 16})
  fresh, initial, _ = start_params(config)
  _, encoder, _ = bert_hub.load_bert(GOLDEN / "bert_tiny_model")
  assert_trees_equal(initial["bert"], encoder)
  assert_trees_equal(initial["classifier"], fresh["classifier"])  # 2 labels, not its 3


def test_a_missing_init_checkpoint_is_a_clear_error(tmp_path, tfds_dir):
  config = fine_tuning_config(tfds_dir, tmp_path / "nowhere")
  message = r"init.checkpoint: '.*nowhere' does not exist; give a tfjax pre"
  with pytest.raises(FileNotFoundError, match=message):
    registry.train(config, str(tmp_path / "w"))


def test_a_gpt_workdir_as_init_checkpoint_is_a_clear_error(tmp_path, tfds_dir):
  gpt = tmp_path / "gpt"
  (gpt / "checkpoints").mkdir(parents=True)
  (gpt / "config.json").write_text(json.dumps({"task": "lm", "model": {"d_model": 32}}))
  config = fine_tuning_config(tfds_dir, gpt)
  with pytest.raises(
    ValueError, match=r"init.checkpoint: .*workdir of task 'lm', not a BERT pre-training run; give"
  ):
    registry.train(config, str(tmp_path / "w"))


@pytest.mark.parametrize(
  "overrides, message",
  [
    (
      {"init.checkpoint": ""},
      r"task 'classification' needs a tokenizer: set init.checkpoint .* or data",
    ),
    (
      {"init.checkpoint": "", "data.tokenizer": "vocab.txt"},
      r"init.load_weights=True needs init.checkpoint; or set it to False",
    ),
  ],
)
def test_a_classifier_without_checkpoint_or_tokenizer_is_rejected_before_anything(
  tmp_path, tfds_dir, overrides, message
):
  config = fine_tuning_config(tfds_dir, "", **overrides)
  with pytest.raises(ValueError, match=message):
    registry.train(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_resuming_a_pretraining_workdir_as_a_classifier_is_a_clear_error(
  tmp_path, tfds_dir, pretrained
):
  workdir = tmp_path / "copy"
  shutil.copytree(pretrained.workdir, workdir)
  before = tree_digest(workdir)
  config = fine_tuning_config(tfds_dir, pretrained.workdir)
  with pytest.raises(
    ValueError, match=r"holds a run of task 'bert_pretraining', not 'classification'.*fresh"
  ):
    registry.train(config, str(workdir))
  assert tree_digest(workdir) == before


def test_a_fine_tuning_run_resumes_without_its_pretrained_checkpoint(
  tmp_path, tfds_dir, pretrained
):
  """A resumed run takes its architecture and tokenizer from its own workdir: the pre-trained
  checkpoint it started from may have moved (or trained on) since."""
  source = tmp_path / "pretrained"
  shutil.copytree(pretrained.workdir, source)
  workdir = tmp_path / "fine_tuned"
  first = {"train.num_steps": 2, "train.checkpoint_every": 2}
  registry.train(fine_tuning_config(tfds_dir, source, **first), str(workdir))
  shutil.rmtree(source)
  final = registry.train(
    fine_tuning_config(tfds_dir, source, **{"train.num_steps": 4}), str(workdir)
  )
  assert final["step"] == 4
  saved = json.loads((workdir / "config.json").read_text())["model"]
  assert (
    saved["d_model"]
    == json.loads((pretrained.workdir / "config.json").read_text())["model"]["d_model"]
  )
