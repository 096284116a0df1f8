"""``python -m tools.chaos_lib``: the entry point ``tools/chaos`` runs."""

import sys

from tools.chaos_lib.cli import main

sys.exit(main())
