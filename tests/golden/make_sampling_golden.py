"""Print the sampler golden of tests/inference/test_sampling.py: `sampling.generate`'s exact
outputs for the seeds and settings of its GOLDEN_CASES, on its tiny random GPT.

The literals in the test were printed by this script at commit adfc806, before beam search and
repetition control were added, so they pin that the sampler's outputs did not change. Regenerate
(only on purpose: a changed golden means changed samples for every user's seed) with

  python tests/golden/make_sampling_golden.py
"""

import os
import pathlib
import sys

os.environ.setdefault(  # the test suite's XLA flags (tests/conftest.py)
  "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
)
ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "inference")]

import jax  # noqa: E402
import numpy as np  # noqa: E402
import test_sampling  # noqa: E402

from tfjax.inference import sampling  # noqa: E402


def main() -> None:
  params = test_sampling._params(test_sampling.TINY)
  print("GOLDEN = [")
  for seed, settings in test_sampling.GOLDEN_CASES:
    result = sampling.generate(
      test_sampling.TINY,
      params,
      test_sampling.PROMPTS,
      max_new_tokens=test_sampling.GOLDEN_NEW_TOKENS,
      rng=jax.random.key(seed),
      **settings,
    )
    tokens = np.asarray(result.tokens).tolist()
    lengths = np.asarray(result.lengths).tolist()
    finished = np.asarray(result.finished).tolist()
    print(f"  ({tokens}, {lengths}, {finished}),")
  print("]")


if __name__ == "__main__":
  main()
