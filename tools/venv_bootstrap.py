"""Make a tools/ script set itself up like tools/dev and tools/test do.

Imported first by the Python scripts in tools/ that need the project's dependencies: when the
running interpreter is not the project's ``.venv``, it runs ``tools/setup`` (which installs what
is missing and is quick when nothing is) and re-executes the script with ``.venv/bin/python``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"


def ensure_venv() -> None:
    """Re-run the current script inside the project's virtualenv, setting it up first."""
    if Path(sys.prefix).resolve() == (ROOT / ".venv").resolve():
        return
    subprocess.run(["bash", str(ROOT / "tools" / "setup")], check=True)
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), *sys.argv])


ensure_venv()
