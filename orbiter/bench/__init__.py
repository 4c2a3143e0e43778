"""``orbiter bench``: a real load generator, run against orbiter and its peers side by side."""
