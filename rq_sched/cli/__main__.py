"""``python -m rq_sched.cli``: the ``rq-sched`` command without the console script."""

import sys

from rq_sched.cli import main

sys.exit(main())
