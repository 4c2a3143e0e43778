"""Engines: the Broker and PresenceStore interfaces and their implementations."""
