"""`pip install '.[load]'` gives everything the load engine imports (it once lacked
prometheus_client: the engine could not be imported)."""
from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path
from typing import Callable

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.packaging_venvs import GROUP, Venv

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "swarm_checks"


def _imports(path: Path, module_level_only: bool) -> set[str]:
    """Absolute module names a file imports: at module level (what `import` runs), or anywhere."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def _file_of(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.exists()), None)


def third_party_imports() -> dict[str, set[str]]:
    """Top-level third-party module -> the files importing it, over the engine's files (every
    import) and the first-party modules importing the engine pulls in (module-level imports)."""
    queue = [(path, False) for path in sorted((PACKAGE / "load").glob("*.py"))] + [(PACKAGE / "__init__.py", True)]
    seen: set[Path] = set()
    found: dict[str, set[str]] = {}
    while queue:
        path, module_level = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imports(path, module_level):
            top = module.split(".")[0]
            if top == "swarm_checks":
                parts = module.split(".")
                for depth in range(1, len(parts) + 1):
                    target = _file_of(".".join(parts[:depth]))
                    if target is not None and target not in seen:
                        queue.append((target, target.parent != PACKAGE / "load"))
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_of_the_engine_is_in_the_load_extra_or_the_core() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    provided = {canonicalize_name(Requirement(r).name)
                for r in project["dependencies"] + project["optional-dependencies"]["load"]}
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for module, files in sorted(third_party_imports().items()):
        names = {canonicalize_name(d) for d in distributions.get(module, [])}
        if not names:
            missing.append(f"{module} (imported by {', '.join(sorted(files))}) is not installed here")
        elif not names & provided:
            missing.append(f"{module} (distribution {', '.join(sorted(names))}, imported by {', '.join(sorted(files))})")
    assert not missing, "not provided by the core dependencies or the `load` extra: " + "; ".join(missing)


@pytest.mark.xdist_group(GROUP)
def test_a_fresh_install_of_the_load_extra_imports_the_engine(fresh_install: Callable[[str], Venv], tmp_path: Path) -> None:
    """The real thing: a fresh venv with `pip install 'swarm-checks[load]'` non-editable (only
    what the wheel and its dependencies bring; shared with tests/test_packaging.py, see
    tests/packaging_venvs.py), then the import, outside the repository. Skips, with pip's last
    line, where pip cannot install (no index reachable)."""
    venv = fresh_install("load")
    run = venv.run(["python", "-c", "import swarm_checks.load, swarm_checks.load.__main__"], cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
