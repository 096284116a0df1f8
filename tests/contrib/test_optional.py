"""The integrations are optional: the core imports none of their packages, and an integration
whose package is missing fails on import with the command that installs its extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.worker_support import ROOT

CORE_IMPORTS = "import rq_sched, rq_sched.worker, rq_sched.scheduler, rq_sched.cli, rq_sched.web"


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_core_imports_no_integration_package() -> None:
    # Not opentelemetry: redis-py itself imports it when it is installed.
    done = run_python(
        f"{CORE_IMPORTS}\n"
        "import sys\n"
        "found = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'django', 'fastapi', 'pydantic'} "
        "or m.startswith('rq_sched.contrib'))\n"
        "print(found)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("rq_sched.contrib.otel", "opentelemetry", "otel"),
        ("rq_sched.contrib.django", "django", "django"),
        ("rq_sched.contrib.starlette", "starlette", "web"),
    ],
)
def test_a_missing_package_names_the_extra_to_install(
    module: str, blocked: str, extra: str
) -> None:
    # A None entry in sys.modules makes `import <blocked>` raise ImportError, as if absent.
    done = run_python(
        f"import sys\nsys.modules[{blocked!r}] = None\n"
        f"try:\n    import {module}\nexcept ImportError as exc:\n    print(exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert f"pip install 'rq_sched[{extra}]'" in done.stdout


def test_the_stdlib_integrations_need_no_extra() -> None:
    done = run_python(
        "import sys\n"
        "for name in ('opentelemetry', 'django', 'starlette', 'fastapi', 'pydantic'):\n"
        "    sys.modules[name] = None\n"
        "import rq_sched.contrib.typed, rq_sched.contrib.jsonlog\n"
        "print('ok')\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
