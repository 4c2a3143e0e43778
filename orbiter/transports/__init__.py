"""Transport adapters: frame a session's messages for one kind of connection."""
