"""Tests for tfjax.data.seq2seq: text pairs from any two fields, packing into rows, truncation,
batches."""

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests.tiny_datasets import tiny_builder
from tfjax.data import seq2seq

BOS, EOS = 2, 3
WORDS = "open save close the file window printer new old page text color image folder".split()


def documents(seed, n):
  """Sentences of 4 to 7 words, each with a "summary" (its first two words, upper case)."""
  rng = np.random.default_rng(seed)
  sentences = [" ".join(rng.choice(WORDS, size=rng.integers(4, 8))) for _ in range(n)]
  return [{"document": s, "summary": " ".join(s.split()[:2]).upper()} for s in sentences]


tiny_builder(
  "tiny_summaries",
  {"document": tfds.features.Text(), "summary": tfds.features.Text()},
  {
    "train": documents(0, 300),
    "validation": [*documents(1, 6), {"document": "open the file", "summary": " "}],
  },
)
tiny_builder(
  "tiny_cipher",
  tfds.features.Translation(languages=("en", "xx")),
  {"train": [{"en": d["document"], "xx": d["document"][::-1]} for d in documents(2, 300)]},
)


def data_config(tmp_path, **overrides):
  config = dict(
    name="tiny_summaries",
    tfds_data_dir=str(tmp_path / "tfds"),
    cache_dir=str(tmp_path / "cache"),
    source_field="document",
    target_field="summary",
    train_split="train",
  )
  return ml_collections.ConfigDict({**config, **overrides})


def test_any_two_text_fields_are_the_source_and_target(tmp_path, caplog):
  data = seq2seq.TranslationData(data_config(tmp_path), vocab_size=300)
  expected = documents(1, 6)
  sources, targets = data.texts("validation")
  # In the data source's order; the pair with an empty side is skipped.
  pairs = sorted(zip(sources, targets, strict=True))
  assert pairs == sorted((d["document"], d["summary"]) for d in expected)
  assert "Skipped 1 pairs with an empty side in split 'validation'" in caplog.text
  ids = data.ids("validation")
  assert [data.tokenizer.decode(x) for x in ids.targets] == targets
  (path,) = (tmp_path / "cache" / "tokens").glob("*.npz")
  assert path.name.startswith("tiny_summaries_1.0.0-validation-document-summary-")


def test_the_fields_default_to_the_languages_of_a_translation_dataset(tmp_path):
  config = data_config(tmp_path, name="tiny_cipher", source_lang="en", target_lang="xx")
  del config["source_field"], config["target_field"]
  data = seq2seq.TranslationData(config, vocab_size=300)
  assert (data.source_field, data.target_field) == ("en", "xx")
  sources, targets = data.texts("train")
  assert targets == [s[::-1] for s in sources] and len(sources) == 300


def test_a_missing_field_or_one_field_twice_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match=r"data.target_field='headline' is not a feature of"):
    seq2seq.TranslationData(data_config(tmp_path, target_field="headline"), vocab_size=300)
  with pytest.raises(ValueError, match="data.source_field and data.target_field are both"):
    seq2seq.TranslationData(data_config(tmp_path, target_field="document"), vocab_size=300)


def pairs(*lengths):
  rng = np.random.default_rng(0)
  make = lambda n: rng.integers(4, 50, size=n).astype(np.int32)
  return seq2seq.Pairs([make(s) for s, _ in lengths], [make(t) for _, t in lengths])


def unpack(packed, row, segment):
  """The pair of `segment` in `row`, read back through the segment ids alone."""
  source = packed["inputs"][row][packed["inputs_segmentation"][row] == segment]
  target_mask = packed["decoder_segmentation"][row] == segment
  return source, packed["decoder_inputs"][row][target_mask], packed["targets"][row][target_mask]


def test_packed_rows_hold_every_pair_with_eos_bos_and_own_positions():
  data = pairs((3, 4), (2, 2), (5, 1), (1, 6))
  packed = seq2seq.pack_pairs(data, max_len=10, bos_id=BOS, eos_id=EOS)
  assert set(packed) == set(seq2seq.PACKED_FEATURES)
  assert all(a.shape == (2, 10) and a.dtype == np.int32 for a in packed.values())
  # Row 0: pairs 0 and 1 (4 + 3 source slots, 5 + 3 target slots); pair 2 would overflow.
  where = [(0, 1), (0, 2), (1, 1), (1, 2)]
  for i, (row, segment) in enumerate(where):
    source, decoder_in, target = unpack(packed, row, segment)
    np.testing.assert_array_equal(source, [*data.sources[i], EOS])
    np.testing.assert_array_equal(decoder_in, [BOS, *data.targets[i]])
    np.testing.assert_array_equal(target, [*data.targets[i], EOS])
    positions = packed["inputs_position"][row][packed["inputs_segmentation"][row] == segment]
    np.testing.assert_array_equal(positions, np.arange(len(source)))
  # Padding: segment 0 and token 0 together.
  padding = packed["decoder_segmentation"] == 0
  assert (packed["targets"][padding] == 0).all() and (packed["decoder_inputs"][padding] == 0).all()


def test_long_sentences_are_cut_with_a_count_or_refused(caplog):
  data = pairs((12, 3), (2, 10), (3, 7))
  packed = seq2seq.pack_pairs(data, max_len=8, bos_id=BOS, eos_id=EOS)
  assert "Truncated 1 of 3 source sentences to 7 tokens" in caplog.text
  assert "Truncated 1 of 3 target sentences to 7 tokens" in caplog.text
  source, _, _ = unpack(packed, 0, 1)
  np.testing.assert_array_equal(source, [*data.sources[0][:7], EOS])
  # A cut target is teacher-forced on its first 8 tokens; its last label is the next token, not
  # a false EOS. A target of exactly 7 tokens fits with its EOS.
  _, decoder_in, target = unpack(packed, 1, 1)
  np.testing.assert_array_equal(decoder_in, [BOS, *data.targets[1][:7]])
  np.testing.assert_array_equal(target, data.targets[1][:8])
  _, decoder_in, target = unpack(packed, 2, 1)
  np.testing.assert_array_equal(target, [*data.targets[2], EOS])
  with pytest.raises(ValueError, match="1 of 3 source sentences are longer than 7 tokens"):
    seq2seq.pack_pairs(data, max_len=8, bos_id=BOS, eos_id=EOS, truncate_long=False)


def test_eval_batches_pad_the_last_batch_with_weightless_rows():
  packed = seq2seq.pack_pairs(pairs(*[(6, 6)] * 5), max_len=8, bos_id=BOS, eos_id=EOS)
  batches = seq2seq.eval_batches(packed, batch_size=2, max_batches=10)
  assert len(batches) == 3
  assert (batches[-1]["decoder_segmentation"][1] == 0).all()
  assert sum(int((b["decoder_segmentation"] != 0).sum()) for b in batches) == 5 * 7


def test_train_iterator_resumes_exactly():
  packed = seq2seq.pack_pairs(pairs(*[(3, 3)] * 40), max_len=8, bos_id=BOS, eos_id=EOS)
  it = seq2seq.train_iterator(packed, batch_size=4, seed=1)
  next(it)
  state = it.get_state()
  expected = [next(it)["inputs"] for _ in range(6)]  # crosses an epoch (20 rows = 5 batches)
  resumed = seq2seq.train_iterator(packed, batch_size=4, seed=1)
  resumed.set_state(state)
  for batch in expected:
    np.testing.assert_array_equal(next(resumed)["inputs"], batch)
