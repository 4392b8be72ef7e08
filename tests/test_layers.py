"""The package's layers, stated as a test: an import that breaks them fails here.

Layers, lowest first (DESIGN.md): errors < core < models < weights < inference <
evaluation, codec < training < api < apps. A module may import its own layer and lower
ones, never a higher one; evaluation and codec are siblings that do not import each other;
inference, codec, core and model code never import training. No module uses another
module's private (``_name``) names. Function-level (lazy) imports count the same as
top-level ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "superres"

#: Rank of each top-level part of the package. Equal ranks may not import each other unless
#: they are the same part.
RANKS = {
    "errors": 0,
    "core": 1,
    "models": 2,
    "weights": 3,
    "inference": 4,
    "evaluation": 5,
    "codec": 5,
    "training": 6,
    "api": 7,
    "apps": 8,
    "__main__": 9,
}


def _part(module: str) -> str:
    """``superres.core.io`` -> ``core``; ``superres`` -> ``""`` (the lazy package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _modules(package: Path) -> list[tuple[str, Path]]:
    out = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def _imports(path: Path, module: str, root: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, imported module, names)`` of every superres import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "superres":
                    found.append((node.lineno, alias.name, []))
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            if target.split(".")[0] != "superres":
                continue
            names = [a.name for a in node.names]
            if target == "superres":  # `from superres import x`: x may be a subpackage
                for name in names:
                    sub = root / name
                    if sub.is_dir() or sub.with_suffix(".py").is_file():
                        found.append((node.lineno, f"superres.{name}", []))
                    else:
                        found.append((node.lineno, "superres", [name]))
            else:
                found.append((node.lineno, target, names))
    return found


#: Names of the lazy package root that any layer may import (not layer-crossing).
ROOT_NAMES = {"__version__"}


def _violations(package: Path = PACKAGE) -> list[str]:
    problems = []
    for module, path in _modules(package):
        part = _part(module)
        if part not in RANKS:
            if part:
                problems.append(f"{module}: part {part!r} has no rank in RANKS")
            continue
        rank = RANKS[part]
        for line, target, names in _imports(path, module, package):
            where = f"{path.relative_to(package.parent)}:{line}"
            if target == "superres":
                extra = set(names) - ROOT_NAMES
                if extra and part != "__main__":
                    problems.append(f"{where}: imports {sorted(extra)} from the package root")
                continue
            other = _part(target)
            if other not in RANKS:
                problems.append(f"{where}: imports unknown part {target}")
                continue
            if other != part and RANKS[other] >= rank:
                problems.append(f"{where}: {part} (rank {rank}) imports {target} ({other})")
            if part != "training" and other == "training" and RANKS[part] < RANKS["training"]:
                problems.append(f"{where}: {part} imports training code ({target})")
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target != module:
                problems.append(f"{where}: uses private names {private} of {target}")
    return problems


def test_no_import_breaks_the_layers() -> None:
    problems = _violations()
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_forbidden_import(tmp_path) -> None:
    """A core module importing training, or a private name, is reported (the test can fail)."""
    fake = tmp_path / "superres"
    (fake / "core").mkdir(parents=True)
    (fake / "training").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "core" / "__init__.py").write_text("")
    (fake / "training" / "__init__.py").write_text("")
    (fake / "training" / "loop.py").write_text("def _secret():\n    pass\n")
    (fake / "core" / "bad.py").write_text(
        "def f():\n    from superres.training.loop import _secret\n    return _secret\n"
    )
    text = "\n".join(_violations(fake))
    assert "core (rank 1) imports superres.training.loop" in text
    assert "imports training code" in text
    assert "uses private names ['_secret']" in text


@pytest.mark.parametrize("part", sorted(RANKS))
def test_every_ranked_part_exists(part: str) -> None:
    assert (PACKAGE / part).is_dir() or (PACKAGE / f"{part}.py").is_file()
