"""The ``dispatcher`` command line (``dispatcher.cli.main``), its pull commands, the dev stack, the embedded Redis."""
