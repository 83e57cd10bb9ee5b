"""A BERT classifier fine-tuned through the trainer: its test accuracy against the predictions of
its own checkpoint, its majority-class baseline, and the tokenizer it saves."""

import json

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests.tasks.bert_runs import fine_tuning_config
from tests.tasks.text_pair_sets import CHOICES
from tfjax.data import classification
from tfjax.data.tokenizers.bert import load_bert_tokenizer
from tfjax.models.bert import BertConfig, BertForMultipleChoice, BertForSequenceClassification
from tfjax.tasks import registry
from tfjax.training import checkpoint

KEY = jax.random.PRNGKey(0)


def test_a_fine_tuning_run_reports_test_accuracy_and_saves_the_tokenizer(tfds_dir, fine_tuned):
  workdir, config, final = fine_tuned.workdir, fine_tuned.config, fine_tuned.final
  assert final["step"] == 3 and 0.0 <= final["eval_accuracy"] <= 1.0
  assert json.loads((workdir / "final_metrics.json").read_text()) == final

  # The reference: labels read from TFDS, predictions of the final checkpoint's parameters.
  def labels(split: str) -> np.ndarray:
    source = tfds.data_source(config.data.name, split=split, data_dir=tfds_dir)
    return np.array([example["label"] for example in source])

  train_labels, test_labels = labels(config.data.train_split), labels(config.data.test_split)
  majority = np.bincount(train_labels).argmax()
  assert final["test_majority_class_accuracy"] == pytest.approx(np.mean(test_labels == majority))

  tokenizer = load_bert_tokenizer(workdir)
  assert tokenizer.sha256 == load_bert_tokenizer(config.init.checkpoint).sha256
  data = classification.prepare_classification_data(config.data, tokenizer)
  np.testing.assert_array_equal(data.test.label, test_labels)
  saved_model = json.loads((workdir / "config.json").read_text())["model"]
  model = BertForSequenceClassification(
    BertConfig.from_config(saved_model), num_labels=data.num_labels
  )
  abstract = jax.eval_shape(model.init, KEY, data.test.tokens[:1])["params"]
  params = checkpoint.restore_params(str(workdir), abstract)
  predict = jax.jit(lambda p, *x: model.apply({"params": p}, *x))
  logits = predict(params, data.test.tokens, data.test.segment_ids, data.test.attention_mask)
  accuracy = np.mean(np.asarray(logits).argmax(-1) == test_labels)
  assert 0.0 <= final["test_accuracy"] <= 1.0
  assert final["test_accuracy"] == pytest.approx(accuracy)


# --- entailment pairs and multiple choice ----------------------------------------------------


def test_multiple_choice_scores_each_answer_paired_with_the_context(tmp_path, tfds_dir, pretrained):
  """§4.4 (SWAG): [CLS] context [SEP] answer_k [SEP] for each k, one score each, a softmax over
  them; the rows are [n, choices, t] and the test accuracy is the checkpoint's."""
  config = fine_tuning_config(tfds_dir, pretrained.workdir, **CHOICES)
  final = registry.train(config, str(tmp_path / "w"))
  tokenizer = load_bert_tokenizer(tmp_path / "w")
  data = classification.prepare_classification_data(config.data, tokenizer)
  test = data.test
  assert test.tokens.shape == (8, 3, config.data.max_seq_len)
  source = list(tfds.data_source("tiny_choices", split="test", data_dir=tfds_dir))
  first = source[0]
  context = tokenizer.encode(first["context"].decode())
  answer = tokenizer.encode(first["choices"][1].decode())
  expected = [tokenizer.cls_id, *context, tokenizer.sep_id, *answer, tokenizer.sep_id]
  assert list(test.tokens[0, 1, : len(expected)]) == expected
  assert list(test.label) == [int(e["label"]) for e in source]
  saved_model = json.loads((tmp_path / "w" / "config.json").read_text())["model"]
  model = BertForMultipleChoice(BertConfig.from_config(saved_model))
  params = checkpoint.restore_params(
    str(tmp_path / "w"), jax.eval_shape(model.init, KEY, test.tokens[:1])["params"]
  )
  scores = model.apply({"params": params}, test.tokens, test.segment_ids, test.attention_mask)
  assert scores.shape == (8, 3)
  accuracy = np.mean(np.asarray(scores).argmax(-1) == test.label)
  assert final["test_accuracy"] == pytest.approx(accuracy)


def test_more_answers_than_num_choices_is_a_one_line_error(tmp_path, tfds_dir, pretrained):
  config = fine_tuning_config(tfds_dir, pretrained.workdir, **{**CHOICES, "data.num_choices": 2})
  message = r"^example 0 of split 'train' of dataset 'tiny_choices' has 3 answers, more than data"
  with pytest.raises(ValueError, match=message):
    registry.train(config, str(tmp_path / "w"))
