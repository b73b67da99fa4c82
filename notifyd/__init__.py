"""notifyd: a self-hosted notification delivery daemon."""

__version__ = "0.1.0"
