"""notifyd's benchmarks: figures beside same-run references, not pass/fail (see README.md)."""
