"""Every module of the package imports on its own, in a fresh interpreter: no import cycle hides behind
the order in which the test suite or `definitions.py` happens to import things."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import marketplace_assets

MODULES = sorted(m.name for m in pkgutil.walk_packages(marketplace_assets.__path__, "marketplace_assets."))


def _import_alone(module: str) -> tuple[str, str]:
    command = [sys.executable, "-c", f"import {module}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    return module, "" if done.returncode == 0 else done.stderr.strip().splitlines()[-1]


def test_each_module_imports_alone_in_a_fresh_interpreter() -> None:
    assert len(MODULES) > 50, MODULES  # the walk found the package's modules
    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = {module: error for module, error in pool.map(_import_alone, MODULES) if error}
    assert failures == {}
