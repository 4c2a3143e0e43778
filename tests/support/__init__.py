"""What the tests share that is not a test: servers they start, clients they drive, stand-ins."""
