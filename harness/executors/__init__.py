"""Where a plan runs: ``local`` (subprocesses here) or ``docker`` (a container per run)."""
