"""Print the pip requirements that pin each runtime dependency to its lowest allowed version.

Used by ``tools/test_lowest``: every ``name>=X`` of the core dependencies and of the feature
extras becomes ``name==X`` (extras such as ``redis[hiredis]`` keep their extra); the ``test``
extra is printed unpinned, since it holds the tools that run the check, not what users install.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+(?:\[[^\]]+\])?)\s*>=\s*(?P<low>[^,;\s]+)")
TOOL_EXTRAS = {"test", "dev", "all"}


def pins() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = [pin(req) for req in project["dependencies"]]
    for extra, reqs in project.get("optional-dependencies", {}).items():
        if extra in TOOL_EXTRAS:
            continue
        out.extend(pin(req) for req in reqs if not req.startswith("rq_sched"))
    for extra in ("test", "dev"):
        out.extend(
            req
            for req in project.get("optional-dependencies", {}).get(extra, [])
            if not req.startswith("rq_sched")
        )
    return out


def pin(requirement: str) -> str:
    match = REQUIREMENT.match(requirement)
    if not match:
        raise SystemExit(f"lowest_pins: no lower bound in {requirement!r}; give it one (name>=X)")
    return f"{match['name']}=={match['low']}"


if __name__ == "__main__":
    print("\n".join(pins()))
