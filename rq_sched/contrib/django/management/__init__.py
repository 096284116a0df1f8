"""Django management commands of the rq_sched app (Django finds them by this layout)."""
