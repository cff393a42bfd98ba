"""Every ``ragsweep`` command in its own module: its arguments beside its handler (``cli.py`` assembles them)."""
