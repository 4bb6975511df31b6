"""The Swarming bot: polls the server, runs one task at a time, streams its
output back. Standard library, `requests` and `shared/` only: it ships as a zip."""
