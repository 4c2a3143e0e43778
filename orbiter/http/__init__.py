"""The HTTP face of a node: the aiohttp application, the HTTP API, static files."""
