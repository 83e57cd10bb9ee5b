"""A fake bigbench-1.0.0.tar.gz for the tests: `write_archive` writes task.json files in the real
archive's layout, and `xsum_examples` makes gem/xsum-like examples.

Every example here is invented: BIG-bench's own text carries a canary and is never committed.
"""

import io
import json
import pathlib
import tarfile

from tfjax.data.datasets import bigbench

# Task-level fields beside "examples", as gem/xsum's task.json has them (values invented).
TASK_FIELDS = {
  "gem_xsum": {
    "keywords": ["summarization"],
    "metrics": ["bleu", "rouge"],
    "task_prefix": "",
    "example_input_prefix": "\nsum it up: ",
    "example_output_prefix": "\nin one line: ",
  }
}


def write_archive(path: pathlib.Path, tasks: dict[str, list[dict]]) -> None:
  """A .tar.gz with bigbench's layout: a few other members, then each task's task.json (a
  config name such as gem_xsum goes to its path, gem/xsum)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  members = {"bigbench-1.0.0/PKG-INFO": b"Name: bigbench\n"}
  for task, examples in tasks.items():
    path_in_archive = bigbench.TASK_PATHS.get(task, task)
    task_json = {"canary": "invented test data", "name": path_in_archive.split("/")[-1]}
    task_json.update(TASK_FIELDS.get(task, {}), examples=examples)
    members[bigbench.TASK_MEMBER.format(task=path_in_archive)] = json.dumps(task_json).encode()
  with tarfile.open(path, "w:gz") as tar:
    for name, content in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(content)
      tar.addfile(info, io.BytesIO(content))


def xsum_article(i: int) -> str:
  return f"Mayor {i} opened a bridge on Monday.\nIt cost {i} pounds.\nLocals cheered."


def xsum_summary(i: int) -> str:
  return f"A town got a bridge worth {i} pounds."


def xsum_examples(n: int) -> list[dict]:
  """gem/xsum's layout: {input: the article, a sentence a line; target: one summary; comment}.
  Every fourth input ends in a newline, which the builder strips."""
  return [
    {
      "input": xsum_article(i) + ("\n" if i % 4 == 0 else ""),
      "target": xsum_summary(i),
      "comment": f"invented-{i}",
    }
    for i in range(n)
  ]
