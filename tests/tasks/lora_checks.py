"""What the LoRA task tests share: a run's final and fresh params, bit-for-bit comparison, and
the optimizer-state paths of a checkpoint."""

import jax
import numpy as np
from flax import traverse_util

from tests.tasks.bert_runs import KEY, Run
from tfjax.tasks import registry
from tfjax.training import checkpoint


def flat(tree) -> dict:
  return traverse_util.flatten_dict(tree, sep="/")


def bits(x) -> np.ndarray:
  """The bytes of an array, to compare bit for bit (assert_array_equal calls -0.0 == 0.0)."""
  return np.ascontiguousarray(np.asarray(x)).view(np.uint8)


def final_params(run: Run) -> dict:
  task = registry.make_task(run.config)
  task.prepare_data(str(run.workdir), 0, 1)
  return checkpoint.restore_params(str(run.workdir), jax.eval_shape(task.init_params, KEY))


def fresh_params(run: Run) -> dict:
  """The init of the run's model, as the trainer draws it (its adapters and head start here)."""
  task = registry.make_task(run.config)
  task.prepare_data(str(run.workdir), 0, 1)
  init_rng, _ = jax.random.split(jax.random.PRNGKey(run.config.train.seed))
  return jax.jit(task.init_params)(init_rng)


def saved_optimizer_paths(run: Run, step: int) -> list[str]:
  """Paths of the optimizer-state arrays of a checkpoint (from its metadata)."""
  manager = checkpoint._read_only_manager(str(run.workdir))
  shapes = checkpoint._shapes(checkpoint._saved_tree(manager, step))
  return [path for path, shape in shapes.items() if path.startswith("opt_state/") and shape]
