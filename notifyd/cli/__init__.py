"""The `notifyd` command (see `main`)."""

from notifyd.cli.main import main

__all__ = ["main"]
