"""Tests for tfjax.data.seq2seq: packing pairs into rows, truncation, batches."""

import numpy as np
import pytest

from tfjax.data import seq2seq as translation

BOS, EOS = 2, 3


def pairs(*lengths):
  rng = np.random.default_rng(0)
  make = lambda n: rng.integers(4, 50, size=n).astype(np.int32)
  return translation.Pairs([make(s) for s, _ in lengths], [make(t) for _, t in lengths])


def unpack(packed, row, segment):
  """The pair of `segment` in `row`, read back through the segment ids alone."""
  source = packed["inputs"][row][packed["inputs_segmentation"][row] == segment]
  target_mask = packed["decoder_segmentation"][row] == segment
  return source, packed["decoder_inputs"][row][target_mask], packed["targets"][row][target_mask]


def test_packed_rows_hold_every_pair_with_eos_bos_and_own_positions():
  data = pairs((3, 4), (2, 2), (5, 1), (1, 6))
  packed = translation.pack_pairs(data, max_len=10, bos_id=BOS, eos_id=EOS)
  assert set(packed) == set(translation.PACKED_FEATURES)
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
  packed = translation.pack_pairs(data, max_len=8, bos_id=BOS, eos_id=EOS)
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
    translation.pack_pairs(data, max_len=8, bos_id=BOS, eos_id=EOS, truncate_long=False)


def test_eval_batches_pad_the_last_batch_with_weightless_rows():
  packed = translation.pack_pairs(pairs(*[(6, 6)] * 5), max_len=8, bos_id=BOS, eos_id=EOS)
  batches = translation.eval_batches(packed, batch_size=2, max_batches=10)
  assert len(batches) == 3
  assert (batches[-1]["decoder_segmentation"][1] == 0).all()
  assert sum(int((b["decoder_segmentation"] != 0).sum()) for b in batches) == 5 * 7


def test_train_iterator_resumes_exactly():
  packed = translation.pack_pairs(pairs(*[(3, 3)] * 40), max_len=8, bos_id=BOS, eos_id=EOS)
  it = translation.train_iterator(packed, batch_size=4, seed=1)
  next(it)
  state = it.get_state()
  expected = [next(it)["inputs"] for _ in range(6)]  # crosses an epoch (20 rows = 5 batches)
  resumed = translation.train_iterator(packed, batch_size=4, seed=1)
  resumed.set_state(state)
  for batch in expected:
    np.testing.assert_array_equal(next(resumed)["inputs"], batch)
