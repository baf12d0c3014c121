"""The seams between the layers hold, checked in a fresh interpreter (the test process has imported
everything already): `api/` reaches the simulator only through the implementation `definitions.py`
chooses, so it never imports `sandbox/`; the settings do not need the client; and the simulator on its
own (`python -m marketplace_assets.sandbox`) does not load Dagster or the sandbox resource; and the
schedules, sensors, checks and monitoring read the report catalog, never the assets package."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from marketplace_assets_tests.test_imports import MODULES

API_MODULES = [m for m in MODULES if m.startswith("marketplace_assets.api.")]


def _loaded_after(modules: list[str]) -> set[str]:
    """The modules `sys.modules` holds after importing `modules` in a new interpreter."""
    imports = [f"importlib.import_module({m!r})" for m in modules]
    script = "\n".join(["import importlib, json, sys", *imports, "print(json.dumps(sorted(sys.modules)))"])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def _under(package: str, loaded: set[str]) -> set[str]:
    return {m for m in loaded if m == package or m.startswith(package + ".")}


def test_api_modules_never_import_the_sandbox() -> None:
    assert "marketplace_assets.api.resource" in API_MODULES and len(API_MODULES) >= 5, API_MODULES
    loaded = _loaded_after(API_MODULES)
    assert set(API_MODULES) <= loaded
    assert _under("marketplace_assets.sandbox", loaded) == set()


def _imported_names(module: str) -> set[str]:
    """Every module `module`'s source imports, at the top or inside a function body."""
    origin = importlib.util.find_spec(module).origin
    names: set[str] = set()
    for node in ast.walk(ast.parse(Path(origin).read_text(), origin)):
        if isinstance(node, ast.ImportFrom):
            relative = "." * node.level + (node.module or "")
            names.add(importlib.util.resolve_name(relative, module.rpartition(".")[0]))
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_api_modules_name_neither_the_sandbox_nor_the_settings_even_in_a_function() -> None:
    # An import inside a function body (run only when called) escapes the check above; this one reads
    # the source, so the simulator stays behind the implementation definitions.py chooses.
    forbidden = ("marketplace_assets.sandbox", "marketplace_assets.settings")
    named = {m: sorted(n for n in _imported_names(m) if n.startswith(forbidden)) for m in API_MODULES}
    assert {m: names for m, names in named.items() if names} == {}


def test_settings_do_not_import_the_api() -> None:
    loaded = _loaded_after(["marketplace_assets.settings"])
    assert "marketplace_assets.settings" in loaded
    assert _under("marketplace_assets.api", loaded) == set()
    assert _under("marketplace_assets.sandbox", loaded) == set()


def test_the_simulator_alone_loads_neither_dagster_nor_the_resources() -> None:
    loaded = _loaded_after(["marketplace_assets.sandbox"])
    assert "marketplace_assets.sandbox.app" in loaded
    assert _under("dagster", loaded) == set()
    assert _under("marketplace_assets.api", loaded) == set()


def test_schedules_sensors_checks_and_monitoring_read_the_catalog_not_the_assets() -> None:
    # The catalog (`reports/`) says what each report is; the assets package is one consumer of it.
    readers = [
        "marketplace_assets.schedules",
        "marketplace_assets.export_sensors",
        "marketplace_assets.sensors",
        "marketplace_assets.checks",
        "marketplace_assets.monitoring",
    ]
    loaded = _loaded_after(readers)
    assert set(readers) <= loaded
    assert _under("marketplace_assets.assets", loaded) == set()
    assert "marketplace_assets.reports.catalog" in loaded, "the schedules take the export reports from it"
