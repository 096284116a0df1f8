"""``python -m failover_lib``: the entry point ``tools/failover`` runs."""

import sys

from failover_lib.cli import main

sys.exit(main())
