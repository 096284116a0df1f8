"""Entry point: ``python -m bench_lib`` (what ``tools/bench`` runs)."""

from bench_lib.cli import main

raise SystemExit(main())
