"""Delivery: from the table to the vendors and back into the attempt log.

The dispatcher claims, the channel actors attempt and decide, the recorder writes; see
`service` for how they are wired, and ARCHITECTURE.md for one notification's way through.
"""
