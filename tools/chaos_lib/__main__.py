"""``python -m chaos_lib``: the entry point ``tools/chaos`` runs."""

import sys

from chaos_lib.cli import main

sys.exit(main())
