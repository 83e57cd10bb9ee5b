"""Dependencies point one way: nn <- models <- hub, inference, training <- tasks <- train/, and
data knows no model. Checked on the import statements of every module of each package, so a new
module that breaks the order fails here (a new task, for instance, edits no file of training/)."""

import ast
import pathlib

import pytest

TFJAX = pathlib.Path(__file__).resolve().parent.parent / "tfjax"

# package -> the tfjax packages its modules must not import
FORBIDDEN = {
  "nn": ("models", "hub", "inference", "training", "tasks", "data"),
  "models": ("hub", "inference", "training", "tasks", "data"),
  "data": ("models", "hub", "inference", "training", "tasks"),
  "hub": ("inference", "training", "tasks"),
  "training": ("hub", "inference", "tasks"),
  "inference": ("tasks",),
}


def _imported_packages(path: pathlib.Path) -> set[str]:
  """The tfjax packages (tfjax.<package>...) that the module at `path` imports."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
      names.update(f"{node.module}.{alias.name}" for alias in node.names)
    elif isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
  return {name.split(".")[1] for name in names if name.startswith("tfjax.") and "." in name}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_no_package_that_depends_on_it(package):
  modules = sorted((TFJAX / package).rglob("*.py"))
  assert len(modules) >= 3  # the walk saw the package
  wrong = {
    (str(path.relative_to(TFJAX)), imported)
    for path in modules
    for imported in _imported_packages(path) & set(FORBIDDEN[package])
  }
  assert not wrong, f"tfjax/{package} must not import these: {sorted(wrong)}"
