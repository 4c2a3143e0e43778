"""Sans-I/O protocol cores: bytes or text in, events out; objects in, bytes out."""
