"""The local stack, for development and tests only: the emulators, our Cloud
Tasks emulator, every function behind one gateway, the local cron, bots, and
`swarming local ...`. Its dependencies are the project's `local` extra, which
`pip install .` (the CLI alone) leaves out."""
