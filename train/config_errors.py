"""One line, before absl parses the flags, for a --config file that cannot be loaded.

ml_collections' `config_flags` reports a missing file as a multi-line IOError when the config is
first used, and a file without `get_config` as an AttributeError from inside flag parsing. These
checks read the file (without running it) first, so the entry points can say what is wrong and
how to fix it in one line.
"""

import ast
import difflib
import os
import pathlib
import sys
from collections.abc import Sequence

EXAMPLE = "configs/gpt_tiny.py"


def config_file_error(argv: Sequence[str], flag: str = "config") -> str | None:
  """What is wrong with the file that `--{flag}=PATH[:ARG]` names in `argv`, or None: a file
  that does not exist, is not a file, is not valid Python, or defines no `get_config`. None as
  well when the flag is absent (absl reports a missing required flag)."""
  value = _flag_value(argv, flag)
  if value is None:
    return None
  path = value.split(":", 1)[0]  # config_flags passes what follows ":" to get_config
  if not path:
    return f"--{flag} is empty; give a config file, e.g. --{flag}={EXAMPLE}"
  file = pathlib.Path(path)
  if not file.exists():
    where = "" if file.is_absolute() else f" (relative to {os.getcwd()})"
    return f"config file {path!r} does not exist{where}; {_suggest(path, flag)}"
  if not file.is_file():
    return f"config file {path!r} is not a file; {_suggest(path, flag)}"
  try:
    tree = ast.parse(file.read_bytes(), filename=path)
  except OSError as e:
    return f"config file {path!r} cannot be read ({e.strerror}); give a file you can read"
  except (SyntaxError, ValueError) as e:  # ValueError: null bytes
    where = f" (line {e.lineno})" if getattr(e, "lineno", None) else ""
    message = getattr(e, "msg", None) or str(e)
    return f"config file {path!r} is not valid Python: {message}{where}; fix it or give another"
  if not _may_define(tree, "get_config"):
    return (
      f"config file {path!r} defines no get_config(); a config file defines get_config() "
      f"returning an ml_collections.ConfigDict, as {EXAMPLE} does"
    )
  return None


def exit_if_bad_config_file(argv: Sequence[str], flag: str = "config") -> None:
  """`sys.exit("error: ...")` (status 1) when `config_file_error` finds a problem."""
  problem = config_file_error(argv, flag)
  if problem is not None:
    sys.exit(f"error: {problem}")


def _flag_value(argv: Sequence[str], flag: str) -> str | None:
  """The last value of --flag / -flag (as `--flag=V` or `--flag V`) before a `--`; absl keeps
  the last one."""
  value = None
  args = list(argv[1:])
  for i, arg in enumerate(args):
    if arg == "--":
      break
    name, eq, rest = arg.partition("=")
    if name in (f"--{flag}", f"-{flag}"):
      if eq:
        value = rest
      elif i + 1 < len(args):
        value = args[i + 1]
  return value


def _suggest(path: str, flag: str) -> str:
  """'give ..., e.g. --config=X' with the closest .py file beside `path` or in configs/."""
  parent = pathlib.Path(path).parent
  candidates = {str(p) for d in (parent, pathlib.Path("configs")) for p in d.glob("*.py")}
  candidates.discard(os.path.join(str(parent), "__init__.py"))
  close = difflib.get_close_matches(path, sorted(candidates), n=1)
  if close:
    return f"did you mean --{flag}={close[0]}?"
  return f"give a config file that defines get_config(), e.g. --{flag}={EXAMPLE}"


def _may_define(tree: ast.Module, name: str) -> bool:
  """Whether the module's top level (if/try/with blocks included) may bind `name`: a def, an
  assignment, an import, or a `from ... import *` (which may)."""
  stack: list[ast.stmt] = list(tree.body)
  while stack:
    node = stack.pop()
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
      if node.name == name:
        return True
    elif isinstance(node, ast.Import | ast.ImportFrom):
      for alias in node.names:
        bound = alias.asname or alias.name.split(".")[0]
        if alias.name == "*" or bound == name:
          return True
    elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
      targets = node.targets if isinstance(node, ast.Assign) else [node.target]
      if any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t)):
        return True
    else:
      for field in ("body", "orelse", "finalbody", "handlers", "cases"):
        for child in getattr(node, field, None) or ():
          if isinstance(child, ast.stmt):
            stack.append(child)
          elif hasattr(child, "body"):  # except handlers, match cases
            stack.extend(child.body)
  return False
