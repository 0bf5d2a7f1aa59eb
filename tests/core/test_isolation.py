"""The framework stands alone: ``npcnn`` outside ``npcnn.digits`` imports nothing of the
application (no Pillow, Flask, HTTP, subprocess, SQL, scipy.ndimage, matplotlib)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import npcnn

PACKAGE = Path(npcnn.__file__).resolve().parent
FORBIDDEN = ("PIL", "flask", "werkzeug", "waitress", "http", "urllib", "socket", "subprocess",
             "sqlalchemy", "sqlite3", "psycopg", "scipy.ndimage", "matplotlib", "npcnn.digits")  # fmt: skip


def framework_modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "digits" not in p.relative_to(PACKAGE).parts]


def imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def is_forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def test_no_framework_module_imports_the_application():
    modules = framework_modules()
    assert len(modules) > 10
    offences = {
        str(path.relative_to(PACKAGE)): sorted(n for n in imported_names(path) if is_forbidden(n))
        for path in modules
    }
    assert {k: v for k, v in offences.items() if v} == {}


def test_importing_npcnn_loads_no_application_library():
    code = "import sys, json, npcnn; print(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "NPCNN_BACKEND": "numpy"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout)
    third_party = ("PIL", "flask", "werkzeug", "sqlalchemy", "matplotlib", "scipy.ndimage")
    assert [m for m in loaded if m.split(".")[0] in third_party or m in third_party] == []
    assert not any(m.startswith("npcnn.digits") for m in loaded)
