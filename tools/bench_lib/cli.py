"""``tools/bench``: the command line, the run over systems and scenarios, and the outputs."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench_lib import envs, report, rq_sched_only
from bench_lib.runner import BenchError, Runner
from bench_lib.scenarios import FULL, QUICK, Context, Metrics, Sizes
from bench_lib.scenarios import SCENARIOS as EVERY_SYSTEM
from bench_lib.systems import QUICK_PEERS, SYSTEMS, System
from rq_sched.local_redis import RedisServer

SCENARIOS = {**EVERY_SYSTEM, **rq_sched_only.SCENARIOS}

PEER_PACKAGES = {
    "py": ["rq", "saq", "celery", "kombu", "gevent", "dramatiq", "huey", "redis"],
    "py-redis5": ["arq", "taskiq", "taskiq-redis", "redis"],
    "project": ["rq_sched", "redis", "hiredis", "msgpack"],
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tools/bench",
        description="rq_sched side by side with peer task queues on one local Redis; "
        "prints rq_sched's advantage over each peer (see docs/bench.md).",
    )
    p.add_argument(
        "--quick", action="store_true", help="small sizes, rq_sched + a few peers (~3 min)"
    )
    p.add_argument("--only", help=f"comma-separated systems (of: {', '.join(SYSTEMS)})")
    p.add_argument(
        "--scenarios",
        help=f"comma-separated scenarios (of: {', '.join(SCENARIOS)}; "
        f"{', '.join(rq_sched_only.SCENARIOS)} run for rq_sched only)",
    )
    p.add_argument(
        "--redis-url",
        help="use this Redis (its database is FLUSHED before every scenario); "
        "default: a private redis-server on a free port",
    )
    p.add_argument("--out", default=str(envs.ROOT / "bench-results"), help="output directory")
    p.add_argument("--no-install", action="store_true", help="fail instead of creating bench-env/")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    return p.parse_args(argv)


def pick(args: argparse.Namespace) -> tuple[list[System], list[str]]:
    names = (
        args.only.split(",")
        if args.only
        else (["rq_sched", *QUICK_PEERS] if args.quick else list(SYSTEMS))
    )
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        raise SystemExit(f"tools/bench: unknown system(s) {unknown}; choose from {list(SYSTEMS)}")
    scenarios = args.scenarios.split(",") if args.scenarios else list(SCENARIOS)
    bad = [s for s in scenarios if s not in SCENARIOS]
    if bad:
        raise SystemExit(f"tools/bench: unknown scenario(s) {bad}; choose from {list(SCENARIOS)}")
    return [SYSTEMS[n] for n in names], scenarios


def run_system(
    runner: Runner, system: System, scenarios: list[str], sizes: Sizes, done: dict[str, Metrics]
) -> Metrics:
    results: Metrics = {}
    try:
        caps = runner.produce(system, "caps", timeout=60)
    except BenchError as exc:
        print(f"[bench] {system.name}: cannot start its producer: {exc}", flush=True)
        return {"error": str(exc)}
    ctx = Context(runner, sizes, caps, results)
    for name in scenarios:
        if name in rq_sched_only.SCENARIOS and system.name != report.OURS:
            continue
        reuse = system.same_client_as
        if reuse and name in ("enqueue", "memory") and name in done.get(reuse, {}):
            results[name] = {**done[reuse][name], "note": f"same client as {reuse}"}
            continue
        start = time.monotonic()
        try:
            results[name] = SCENARIOS[name](ctx, system)
        except (BenchError, redis.RedisError, OSError, KeyError, TimeoutError) as exc:
            results[name] = {"error": str(exc).strip().splitlines()[-1][:300]}
        print(
            f"[bench] {system.name:<10} {name:<8} {time.monotonic() - start:5.1f}s  "
            f"{_brief(results[name])}",
            flush=True,
        )
    return results


def _brief(metrics: Metrics) -> str:
    shown = {k: v for k, v in metrics.items() if k not in ("commands",)}
    text = json.dumps(shown, default=str)
    return text if len(text) < 160 else text[:157] + "..."


def versions(systems: list[System]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for env in sorted({s.env for s in systems}):
        if env == "node":
            pkg = envs.node_dir() / "node_modules" / "bullmq" / "package.json"
            node = subprocess.run(
                ["node", "--version"], capture_output=True, text=True, check=False
            )
            out[env] = {
                "bullmq": json.loads(pkg.read_text())["version"],
                "node": node.stdout.strip(),
            }
            continue
        code = (
            "import importlib.metadata as m, json, sys\n"
            "v = {}\n"
            f"for p in {PEER_PACKAGES[env]!r}:\n"
            "    try: v[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: pass\n"
            "v['python'] = sys.version.split()[0]\n"
            "print(json.dumps(v))\n"
        )
        proc = subprocess.run(
            [envs.python_for(env), "-c", code], capture_output=True, text=True, check=False
        )
        out[env] = (
            json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr[-200:]}
        )
    return out


def chart(json_path: Path, png_path: Path) -> str:
    """Draw the PNG with matplotlib from the bench env (or this interpreter); what happened."""
    candidates = [envs.python_for("py"), sys.executable]
    for python in candidates:
        if not Path(python).exists():
            continue
        proc = subprocess.run(
            [python, "-m", "bench_lib.chart", str(json_path), str(png_path)],
            env=envs.child_env({}),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0:
            return f"chart: {png_path}"
    return "chart skipped: matplotlib not available (it is installed in bench-env/py)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    systems, scenarios = pick(args)
    sizes = QUICK if args.quick else FULL
    for env in sorted({s.env for s in systems}):
        envs.ensure(env, install=not args.no_install)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    server = None
    url = args.redis_url
    tmp = tempfile.TemporaryDirectory(prefix="rq-sched-bench-")
    if url is None:
        server = RedisServer(Path(tmp.name)).start()
        url = server.url
    try:
        return _run(args, systems, scenarios, sizes, url, out, stamp)
    finally:
        if server is not None:
            server.stop()
        tmp.cleanup()


def _run(
    args: argparse.Namespace,
    systems: list[System],
    scenarios: list[str],
    sizes: Sizes,
    url: str,
    out: Path,
    stamp: str,
) -> int:
    runner = Runner(url, out / "logs" / stamp)
    meta: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "mode": "quick" if args.quick else "full",
        "host": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "redis": runner.r.info("server")["redis_version"],
        "sizes": sizes.__dict__,
        "versions": versions(systems),
        "ping_per_s": runner.ping_floor(),
    }
    print(
        f"[bench] {meta['mode']} run on Redis {meta['redis']} at {url}; "
        f"load average {meta['loadavg_start'][0]:.2f} on {meta['cpus']} CPUs; "
        f"round-trip floor {meta['ping_per_s']:,.0f} PINGs/s from one connection",
        flush=True,
    )
    results: dict[str, Metrics] = {}
    for system in systems:
        results[system.name] = run_system(runner, system, scenarios, sizes, results)
    meta["loadavg_end"] = os.getloadavg()
    settings = {s.name: s.settings for s in systems}
    backlogs = sizes.backlogs if "backlog" in scenarios else ()
    text = report.render(results, backlogs)
    checks = [c for m in report.all_metrics(backlogs) if (c := report.target_check(m, results))]
    doc = {"meta": meta, "settings": settings, "results": results, "targets": checks}
    json_path = out / f"bench-{stamp}.json"
    json_path.write_text(json.dumps(doc, indent=1, default=str))
    lines = ["", "== settings =="]
    lines += [f"  {name:<10} {k}: {v}" for name, s in settings.items() for k, v in s.items()]
    lines += [f"  versions: {json.dumps(meta['versions'])}"]
    lines += [
        f"  load average: start {meta['loadavg_start'][0]:.2f}, end {meta['loadavg_end'][0]:.2f} "
        f"({meta['cpus']} CPUs)"
    ]
    lines += [
        f"  round-trip floor: {meta['ping_per_s']:,.0f} PINGs/s (one redis-py connection, one "
        "at a time); one-by-one enqueue can at best reach this rate"
    ]
    full_text = text + "\n" + "\n".join(lines)
    (out / f"bench-{stamp}.txt").write_text(full_text + "\n")
    print(full_text)
    if not args.no_chart:
        print(chart(json_path, out / f"bench-{stamp}.png"))
    print(f"results: {json_path}")
    return 0
