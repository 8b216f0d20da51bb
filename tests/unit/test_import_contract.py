"""The import contract: aioims' packages use each other's public names only.

Groups: ``transfer``, ``lifecycle``, ``migrate``, ``emulator``, ``cli``,
``models`` (subpackages), and ``core`` (the top-level modules, with the
SDK's private ``_protocol``/``_transport``/``_endpoints``).  An import that
crosses from one group into another may name neither a private module
(a path component starting with ``_``) nor a private name.  (Within a group
anything goes.)  A small ast walk instead of import-linter: it needs no
configuration and runs in milliseconds.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "aioims"
GROUPS = {"transfer", "lifecycle", "migrate", "emulator", "cli", "models"}


def group_of(parts: tuple[str, ...]) -> str:
    return parts[0] if parts and parts[0] in GROUPS else "core"


def module_parts(path: Path, root: Path = ROOT) -> tuple[str, ...]:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts
    return parts[:-1] if parts[-1] == "__init__" else parts


def violations(root: Path = ROOT) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        here = module_parts(path, root)
        package = here if path.name == "__init__.py" else here[:-1]
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            targets: list[tuple[tuple[str, ...], list[str]]] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                    mod = (*base, *(node.module.split(".") if node.module else ()))
                elif node.module and node.module.split(".")[0] == "aioims":
                    mod = tuple(node.module.split(".")[1:])
                else:
                    continue
                targets.append((mod, [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "aioims":
                        targets.append((tuple(alias.name.split(".")[1:]), []))
            for mod, names in targets:
                if group_of(mod) == group_of(here):
                    continue
                inner = mod[1:] if group_of(mod) != "core" else mod
                private_module = [p for p in inner if p.startswith("_") and p != "__init__"]
                if group_of(mod) == "core":
                    private_module = []  # the core's private modules: checked below
                    if mod and mod[0].startswith("_") and mod[0] != "_version":
                        private_module = [mod[0]]
                private_names = [n for n in names if n.startswith("_") and n != "__version__"]
                if private_module or private_names:
                    where = f"{path.relative_to(root.parent)}:{node.lineno}"
                    found.append(f"{where} imports {'.'.join(mod) or 'aioims'} "
                                 f"{private_module or ''}{private_names or ''}")  # fmt: skip
    return found


def test_packages_use_each_others_public_names_only() -> None:
    assert violations() == []


def test_the_contract_catches_a_private_import(tmp_path: Path) -> None:
    """The checker itself can fail: private imports in a scratch package
    (never in the source tree: concurrent runs lint it) are reported."""
    root = tmp_path / "aioims"
    (root / "migrate").mkdir(parents=True)
    probe = root / "migrate" / "_contract_probe.py"
    probe.write_text("from ..transfer._engine import Engine\nfrom ..transfer import _x\n")
    (root / "migrate" / "fine.py").write_text("from ..transfer import upload_file\n")
    found = violations(root)
    assert any("_contract_probe.py:1" in v for v in found)
    assert any("_contract_probe.py:2" in v for v in found)
    assert not any("fine.py" in v for v in found)
