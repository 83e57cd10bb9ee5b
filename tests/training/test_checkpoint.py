"""Orbax checkpoints of the train state and the grain iterator round-trip exactly."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from tfjax.data import lm as lm_data
from tfjax.training import checkpoint, optimizer
from tfjax.training.state import TrainState

SEQ_LEN, BATCH = 4, 2


def tiny_params() -> dict:
  keys = jax.random.split(jax.random.key(0), 3)
  return {
    "embed": {"embedding": jax.random.normal(keys[0], (10, 3))},
    "dense": {"kernel": jax.random.normal(keys[1], (3, 4)), "bias": jnp.arange(4.0)},
    "norm": {"scale": jax.random.normal(keys[2], (4,))},
  }


def make_optimizer() -> optax.GradientTransformation:
  train = dict(learning_rate=0.1, warmup_steps=1, num_steps=10, weight_decay=0.1, grad_clip_norm=1)
  return optimizer.make_optimizer(ml_collections.ConfigDict(train))[0]


def trained_state(num_updates: int = 3) -> TrainState:
  """A state with non-trivial optimizer moments: a few updates on a quadratic loss."""
  tx = make_optimizer()
  state = TrainState.create(tiny_params(), tx, jax.random.PRNGKey(7))
  for _ in range(num_updates):
    grads = jax.grad(lambda p: sum(jnp.sum(x**2) for x in jax.tree.leaves(p)))(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
  return state


def abstract_state() -> TrainState:
  return jax.eval_shape(
    lambda: TrainState.create(tiny_params(), make_optimizer(), jax.random.PRNGKey(0))
  )


def data_iterator():
  return lm_data.train_iterator(np.arange(41, dtype=np.int32), SEQ_LEN, BATCH, seed=3)


def save(workdir, state, iterator=None, step=None) -> None:
  manager = checkpoint.checkpoint_manager(str(workdir), max_to_keep=3)
  checkpoint.save(manager, int(state.step) if step is None else step, state, iterator)
  manager.wait_until_finished()
  manager.close()


def test_state_round_trip_keeps_optax_named_tuples_and_arrays(tmp_path):
  state = trained_state()
  save(tmp_path, state)
  manager = checkpoint.checkpoint_manager(str(tmp_path), max_to_keep=3)
  restored = checkpoint.restore(manager, abstract_state())
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  adam = [s for s in jax.tree.leaves(restored.opt_state, is_leaf=_is_adam) if _is_adam(s)]
  assert len(adam) == 1 and int(adam[0].count) == 3
  chex.assert_trees_all_equal(restored, state)
  assert int(restored.step) == 3


def _is_adam(x) -> bool:
  return isinstance(x, optax.ScaleByAdamState)


def test_restored_iterator_gives_the_same_next_batches(tmp_path):
  state = trained_state(num_updates=1)
  iterator = data_iterator()
  for _ in range(3):
    next(iterator)
  save(tmp_path, state, iterator)
  # 10 windows make 5 batches an epoch: the next 4 batches cross into the second epoch.
  expected = [next(iterator) for _ in range(4)]

  fresh = data_iterator()
  manager = checkpoint.checkpoint_manager(str(tmp_path), max_to_keep=3)
  checkpoint.restore(manager, abstract_state(), fresh)
  chex.assert_trees_all_equal([next(fresh) for _ in range(4)], expected)


def test_restore_takes_the_latest_step_or_the_one_asked_for(tmp_path):
  states = {s: trained_state(s) for s in (1, 2)}
  manager = checkpoint.checkpoint_manager(str(tmp_path), max_to_keep=3)
  for step, state in states.items():
    checkpoint.save(manager, step, state)
  manager.wait_until_finished()
  chex.assert_trees_all_equal(checkpoint.restore(manager, abstract_state()), states[2])
  chex.assert_trees_all_equal(checkpoint.restore(manager, abstract_state(), step=1), states[1])


def test_restore_params_returns_the_params(tmp_path):
  state = trained_state()
  save(tmp_path, state, data_iterator())
  abstract = jax.eval_shape(tiny_params)
  chex.assert_trees_all_equal(checkpoint.restore_params(str(tmp_path), abstract), state.params)


@pytest.mark.parametrize(
  "change, message",
  [
    (
      lambda p: {**p, "head": {"kernel": jnp.zeros((4, 2))}},
      "parameter head/kernel of the model is missing from checkpoint step 3",
    ),
    (
      lambda p: {k: v for k, v in p.items() if k != "norm"},
      "parameter norm/scale of checkpoint step 3 .* is not in the model",
    ),
    (
      lambda p: {**p, "dense": {**p["dense"], "kernel": jnp.zeros((3, 5))}},
      r"parameter dense/kernel has shape \(3, 4\) in checkpoint step 3 .* but \(3, 5\) in the",
    ),
  ],
  ids=["missing", "extra", "reshaped"],
)
def test_params_that_do_not_fit_are_named(tmp_path, change, message):
  save(tmp_path, trained_state())
  abstract = jax.eval_shape(lambda: change(tiny_params()))
  manager = checkpoint.checkpoint_manager(str(tmp_path), max_to_keep=3)
  with pytest.raises(ValueError, match=message):
    checkpoint.check_params_fit(manager, 3, abstract)
  with pytest.raises(ValueError, match=message):
    checkpoint.restore_params(str(tmp_path), abstract)


def test_restoring_from_an_empty_workdir_raises_file_not_found(tmp_path):
  manager = checkpoint.checkpoint_manager(str(tmp_path), max_to_keep=3)
  with pytest.raises(FileNotFoundError, match="no checkpoint in"):
    checkpoint.restore(manager, abstract_state())
  with pytest.raises(FileNotFoundError, match="train first"):
    checkpoint.restore_params(str(tmp_path / "never_trained"), jax.eval_shape(tiny_params))


def test_max_to_keep_below_one_is_rejected(tmp_path):
  with pytest.raises(ValueError, match="train.max_to_keep=0 must be >= 1"):
    checkpoint.checkpoint_manager(str(tmp_path), max_to_keep=0)


def test_average_checkpoints_is_the_mean_of_the_newest_params(tmp_path):
  states = [trained_state(n) for n in (1, 2, 3, 4)]
  manager = checkpoint.checkpoint_manager(str(tmp_path), max_to_keep=3)  # step 1 rotates out
  for state in states:
    checkpoint.save(manager, int(state.step), state)
  manager.wait_until_finished()
  abstract = abstract_state().params
  mean, steps = checkpoint.average_checkpoints(str(tmp_path), abstract, last=2)
  assert steps == [3, 4]
  expected = jax.tree.map(
    lambda a, b: (np.asarray(a) + np.asarray(b)) / 2, *(s.params for s in states[2:])
  )
  chex.assert_trees_all_close(mean, expected, rtol=1e-6)
  # More than there are: all kept ones.
  assert checkpoint.average_checkpoints(str(tmp_path), abstract, last=5)[1] == [2, 3, 4]
  with pytest.raises(ValueError, match="choose 1 or more"):
    checkpoint.average_checkpoints(str(tmp_path), abstract, last=0)
  with pytest.raises(FileNotFoundError, match="train first"):
    checkpoint.average_checkpoints(str(tmp_path / "empty"), abstract, last=2)


def truncate_every_data_file(folder) -> None:
  """Small arrays live inline in the OCDBT tree nodes (state/d), large ones in the data files of
  the writing process (state/ocdbt.process_0/d): cut them all."""
  for data_dir in (folder / "state" / "d", folder / "state" / "ocdbt.process_0" / "d"):
    for file in data_dir.iterdir():
      file.write_bytes(file.read_bytes()[:10])


def test_reading_params_skips_an_unreadable_checkpoint_and_leaves_it_in_place(tmp_path):
  states = [trained_state(n) for n in (1, 2, 3)]
  for state in states:
    save(tmp_path, state)
  truncate_every_data_file(tmp_path / "checkpoints" / "3")
  abstract = abstract_state().params

  chex.assert_trees_all_equal(checkpoint.restore_params(str(tmp_path), abstract), states[1].params)
  mean, steps = checkpoint.average_checkpoints(str(tmp_path), abstract, last=2)
  assert steps == [1, 2]  # the two newest readable ones
  expected = jax.tree.map(lambda a, b: (np.asarray(a) + np.asarray(b)) / 2, states[0].params,
                          states[1].params)  # fmt: skip
  chex.assert_trees_all_close(mean, expected, rtol=1e-6)
  assert (tmp_path / "checkpoints" / "3").is_dir()  # readers never rename


def test_training_restore_sets_an_unreadable_checkpoint_aside_and_takes_the_one_before(tmp_path):
  states = [trained_state(n) for n in (1, 2)]
  for state in states:
    save(tmp_path, state)
  truncate_every_data_file(tmp_path / "checkpoints" / "2")

  manager = checkpoint.checkpoint_manager(str(tmp_path), max_to_keep=3)
  restored = checkpoint.restore_newest_readable(manager, abstract_state())
  chex.assert_trees_all_equal(restored, states[0])
  assert manager.all_steps() == [1] and checkpoint.set_aside(manager) == ["2.unreadable"]


def make_skipping_optimizer() -> optax.GradientTransformation:
  train = dict(learning_rate=0.1, warmup_steps=1, num_steps=10, weight_decay=0.1, grad_clip_norm=1)
  return optimizer.make_optimizer(ml_collections.ConfigDict({**train, "on_nonfinite": "skip"}))[0]


def test_checkpoints_convert_between_the_stop_and_skip_policies(tmp_path):
  """on_nonfinite="skip" wraps the optimizer state in apply_if_finite's, "stop" does not: a run
  resumes the other policy's checkpoints, counts added (no skips yet) or dropped."""
  state = trained_state(2)
  save(tmp_path / "stop", state)
  skipping = jax.eval_shape(
    lambda: TrainState.create(tiny_params(), make_skipping_optimizer(), jax.random.PRNGKey(0))
  )
  manager = checkpoint.checkpoint_manager(str(tmp_path / "stop"), max_to_keep=3)
  resumed = checkpoint.restore(manager, skipping)
  assert isinstance(resumed.opt_state, optax.ApplyIfFiniteState)
  assert int(resumed.opt_state.total_notfinite) == 0 and bool(resumed.opt_state.last_finite)
  chex.assert_trees_all_equal(resumed.opt_state.inner_state, state.opt_state)
  chex.assert_trees_all_equal(resumed.params, state.params)

  save(tmp_path / "skip", resumed)
  manager = checkpoint.checkpoint_manager(str(tmp_path / "skip"), max_to_keep=3)
  chex.assert_trees_all_equal(checkpoint.restore(manager, abstract_state()), state)


def test_a_checkpoint_of_another_optimizer_is_a_mismatch_and_not_set_aside(tmp_path):
  state = trained_state(1)
  save(tmp_path, state.replace(opt_state=optax.sgd(0.1).init(state.params)))
  manager = checkpoint.checkpoint_manager(str(tmp_path), max_to_keep=3)
  with pytest.raises(checkpoint.CheckpointMismatch, match="has another state layout"):
    checkpoint.restore_newest_readable(manager, abstract_state())
  assert manager.all_steps() == [1] and checkpoint.set_aside(manager) == []
