"""Text pairs of a TFDS dataset, split by split, as plain Python lists: the one reader of
(prompt, response) texts for prompt->response fine-tuning (`tfjax.data.prompt_response`), the
summarisation datasets (`tfjax.data.summaries`) and the instruction mixture
(`tfjax.data.instructions`). A ClassLabel feature reads as its class name.
"""

import dataclasses
from typing import Any

import tensorflow_datasets as tfds
from absl import logging

from tfjax.data import pipeline


@dataclasses.dataclass(frozen=True)
class TextPairs:
  """The (prompt, response) texts of one split (stripped), each pair's example index in the
  split, and how many examples were left out for an empty side. `name` says in logs and errors
  which pairs these are; `tasks`, in an instruction mixture, each pair's task."""

  prompts: list[str]
  responses: list[str]
  indices: list[int]
  dropped: int = 0
  name: str = "the pairs"
  tasks: list[str] | None = None

  def __len__(self) -> int:
    return len(self.prompts)


def read_pairs(
  dataset: pipeline.PreparedDataset,
  split: str,
  prompt_field: str,
  response_field: str,
  *,
  skip_empty: bool = True,
) -> TextPairs:
  """The text pairs of `split`, in order; a ClassLabel feature gives its class name; a pair
  with an empty (blank) side is dropped and counted, or with `skip_empty=False` an error. The one
  reader of text pairs: the task's, the summarisation datasets' (`tfjax.data.summaries`) and the
  instruction mixture's (`tfjax.data.instructions`)."""
  what = f"split '{split}' of dataset '{dataset.name}'"
  features = dataset.builder.info.features
  as_text = [_text_of(features[f]) for f in (prompt_field, response_field)]
  prompts, responses, indices, empty = [], [], [], 0
  for i, example in enumerate(dataset.examples(split)):
    prompt, response = (
      text(example[f]).strip()
      for text, f in zip(as_text, (prompt_field, response_field), strict=True)
    )
    if not prompt or not response:
      if not skip_empty:
        side, field = ("response", response_field) if prompt else ("prompt", prompt_field)
        raise ValueError(
          f"example {i} of {what} has an empty {side} (feature '{field}'); set "
          "data.skip_empty=True to drop such pairs (counted)"
        )
      empty += 1
      continue
    prompts.append(prompt)
    responses.append(response)
    indices.append(i)
  if empty:
    logging.warning(
      "Dropped %d of %d pairs of %s with an empty prompt or response",
      empty,
      empty + len(prompts),
      what,
    )
  if not prompts:
    raise ValueError(f"{what} has no (prompt, response) pairs with both sides")
  return TextPairs(prompts, responses, indices, empty, what)


def _text_of(feature: Any) -> Any:
  """How a feature's values read as text: a ClassLabel's by their class name."""
  if isinstance(feature, tfds.features.ClassLabel):
    return lambda value: feature.int2str(int(value))
  return pipeline.as_text


@dataclasses.dataclass(frozen=True)
class SplitPairs:
  """The text pairs a run reads: train, eval and test (None: nothing decoded at the end)."""

  train: TextPairs
  eval: TextPairs
  test: TextPairs | None
