"""The `edgekit` command line: thin click commands over the Python API."""
