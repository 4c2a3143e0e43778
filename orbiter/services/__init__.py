"""Services over the engine: pub/sub channels, keys, history and recovery."""
