"""One factory for the tiny TFDS datasets of the tests: `tiny_builder(name, features, splits)`.

It registers a builder `name` whose splits hold the given examples (keyed by their index), written
as array_record like tfjax's own builders, so the code under test reads it by name as it reads a
real dataset. Import it as `from tests.tiny_datasets import tiny_builder`.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import tensorflow_datasets as tfds
from etils import epath

_REGISTERED: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {}


def tiny_builder(
  name: str,
  features: Mapping[str, Any] | tfds.features.FeatureConnector,
  splits: Mapping[str, Sequence[Mapping[str, Any]] | Callable[[], Sequence[Mapping[str, Any]]]],
) -> type[tfds.core.GeneratorBasedBuilder]:
  """Registers the TFDS builder `name`: `features` (a FeaturesDict's dict or any feature
  connector), `splits` {split: examples, or a function giving them}. A second call with the same
  name (the module defining it imported again) returns the first builder."""
  if name in _REGISTERED:
    return _REGISTERED[name]

  def info(self) -> tfds.core.DatasetInfo:
    connector = tfds.features.FeaturesDict(features) if isinstance(features, Mapping) else features
    return tfds.core.DatasetInfo(builder=self, features=connector)

  def split_generators(self, dl_manager: Any) -> dict[str, Any]:
    return {split: self._generate_examples(examples) for split, examples in splits.items()}

  def generate_examples(self, examples: Any):
    yield from enumerate(examples() if callable(examples) else examples)

  def init(self, *, file_format: str | None = None, **kwargs: Any):
    tfds.core.GeneratorBasedBuilder.__init__(
      self, file_format=file_format or "array_record", **kwargs
    )

  class_name = "".join(part.title() for part in name.split("_"))
  _REGISTERED[name] = type(
    class_name,
    (tfds.core.GeneratorBasedBuilder,),
    {
      "name": name,
      "VERSION": tfds.core.Version("1.0.0"),
      "code_path": epath.Path(__file__),  # TFDS cannot find it in this folder without __init__
      "__module__": __name__,
      "__init__": init,
      "_info": info,
      "_split_generators": split_generators,
      "_generate_examples": generate_examples,
    },
  )
  return _REGISTERED[name]
