"""The dependency rules the folder names promise (shared/STYLE.md), checked on the source itself."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from telehealth.settings import ROOT

TRIAGE = ROOT / "telehealth" / "triage"
OUTSIDE_WORLD = {"flask", "werkzeug", "redis", "fakeredis", "rq", "twilio", "sqlalchemy", "alembic", "psycopg", "requests"}
ENVIRONMENT = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
SETTINGS = ROOT / "telehealth" / "settings.py"


def modules(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders for p in folder.rglob("*.py") if ".venv" not in p.parts)


def imported(path: Path) -> set[str]:
    """Every module name a file imports, absolute (relative imports resolved against its package)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names.update([module, *(f"{module}.{alias.name}" for alias in node.names)])
    return names


def where(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def environment_reads(path: Path) -> list[str]:
    """Lines that touch the process environment: os.environ, os.getenv, `from os import environ`..."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    os_names = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names if alias.name == "os"}
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT
                and isinstance(node.value, ast.Name) and node.value.id in os_names):
            found.append(f"{where(path)}:{node.lineno}: os.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [f"{where(path)}:{node.lineno}: from os import {a.name}"
                      for a in node.names if a.name in ENVIRONMENT | {"*"}]
    return found


TRIAGE_MODULES = modules(TRIAGE)


@pytest.mark.parametrize("path", TRIAGE_MODULES, ids=[p.name for p in TRIAGE_MODULES])
def test_the_triage_engine_imports_nothing_from_the_outside_world(path: Path) -> None:
    outside = sorted(n for n in imported(path) if n.split(".")[0] in OUTSIDE_WORLD)
    assert outside == []


@pytest.mark.parametrize("path", TRIAGE_MODULES, ids=[p.name for p in TRIAGE_MODULES])
def test_the_triage_engine_imports_no_other_part_of_the_app(path: Path) -> None:
    app = sorted(n for n in imported(path) if n.startswith("telehealth.") and not n.startswith("telehealth.triage"))
    assert app == []


def test_only_settings_reads_the_environment() -> None:
    reads = [line for path in modules(ROOT / "telehealth", ROOT / "workers") if path != SETTINGS
             for line in environment_reads(path)]
    assert reads == []


@pytest.mark.parametrize(("source", "reads"), [
    ("import os\nTOKEN = os.environ['TOKEN']\n", True),
    ("import os\nTOKEN = os.environ.get('TOKEN')\n", True),
    ("import os as _os\nTOKEN = _os.getenv('TOKEN')\n", True),
    ("from os import environ\n", True),
    ("from os import getenv as env\n", True),
    ("import os\nHERE = os.path.dirname(__file__)\n", False),
    ("from os import path\n", False),
    ("environ = {}\nTOKEN = environ.get('TOKEN')\n", False),
])
def test_the_environment_scan_sees_every_way_of_reading_it(tmp_path: Path, source: str, reads: bool) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(source, encoding="utf-8")
    assert bool(environment_reads(sample)) is reads


def test_the_scans_see_the_real_code() -> None:
    """So that their empty answers above mean something."""
    assert environment_reads(SETTINGS), "settings.py reads os.environ, and the scan must see it"
    assert "telehealth.triage.protocol" in imported(TRIAGE / "engine.py")
    assert "yaml" in imported(TRIAGE / "protocol.py")
