"""The bench environments: separate virtualenvs (and a Node folder) holding the peers.

The peers disagree about redis-py (arq and taskiq-redis want < 6, kombu's Redis transport wants
>= 6.4), so they live in two virtualenvs; BullMQ lives in ``bench-env/node``. rq_sched itself
runs in the interpreter that runs the bench (the project's own), with the project's own
dependencies. Versions are pinned so a rerun measures the same code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV_DIR = ROOT / "bench-env"
TOOLS = ROOT / "tools"

PYTHON_ENVS: dict[str, list[str]] = {
    "py": [
        "rq==3.0.0",
        "saq[hiredis]==0.26.4",
        "celery[redis]==5.7.0",
        "gevent>=24",
        "dramatiq[redis]==2.2.1",
        "huey==3.5.4",
        "redis[hiredis]>=6.4,<8",
        "matplotlib",
        "py-spy",
    ],
    "py-redis5": [
        "arq==0.28.0",
        "taskiq==0.12.6",  # taskiq-redis 1.0.9 (the last for redis-py < 6) breaks on 0.13
        "taskiq-redis==1.0.9",
        "redis[hiredis]>=5,<6",
    ],
}
NODE_PACKAGES = ["bullmq@5"]


class EnvError(RuntimeError):
    """A bench environment is missing and may not be created, or its install failed."""


def python_for(env: str) -> str:
    """The interpreter of bench environment ``env`` ("project" is the bench's own)."""
    if env == "project":
        return sys.executable
    return str(ENV_DIR / env / "bin" / "python")


def node_dir() -> Path:
    return ENV_DIR / "node"


def ensure(env: str, *, install: bool) -> None:
    """Create bench environment ``env`` if it is missing (or fail when ``install`` is False).

    Raises:
        EnvError: the environment is missing and ``install`` is False, or installing failed.
    """
    if env == "project":
        return
    marker = ENV_DIR / env / ".bench-ready"
    if marker.exists():
        return
    if not install:
        raise EnvError(
            f"bench environment {env!r} is missing; run tools/bench without --no-install"
        )
    print(f"[bench] creating bench environment bench-env/{env} (one time, needs the registries)")
    if env == "node":
        _make_node()
    else:
        _make_venv(env)
    marker.write_text("ok\n")


def _run(args: list[str], cwd: Path | None = None) -> None:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise EnvError(f"{' '.join(args[:4])} ... failed:\n{tail}")


def _make_venv(env: str) -> None:
    target = ENV_DIR / env
    _run([sys.executable, "-m", "venv", "--clear", str(target)])
    pip = [
        str(target / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    _run([*pip, *PYTHON_ENVS[env]])
    if env == "py":
        # rq_sched too, so profiles and ad-hoc comparisons can run next to the peers.
        _run([*pip, "-e", str(ROOT)])


def _make_node() -> None:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise EnvError("node and npm are needed for BullMQ: apt-get install -y nodejs npm")
    target = node_dir()
    target.mkdir(parents=True, exist_ok=True)
    if not (target / "package.json").exists():
        (target / "package.json").write_text('{"name": "rq-sched-bench", "private": true}\n')
    _run([npm, "install", "--no-audit", "--no-fund", "--silent", *NODE_PACKAGES], cwd=target)


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """Environment for a bench child process: bench_lib importable, BullMQ resolvable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(TOOLS) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    env["NODE_PATH"] = str(node_dir() / "node_modules")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env
