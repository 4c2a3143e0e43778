"""Tiny broadcast servers the bench compares orbiter with (``broadcast`` flavor)."""
