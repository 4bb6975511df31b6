"""The `swarming` command line tool and its Python API client."""
