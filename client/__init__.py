"""The `swarming` command line tool and the local stack."""
