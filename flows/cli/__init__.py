"""The ``eraflow`` command, apart from the flows it starts.

Options, preflight, progress bars, and the Prefect servers it runs (a private one per
command, or ``eraflow server``).
"""

from flows.cli.app import USAGE, app, main

__all__ = ["USAGE", "app", "main"]
