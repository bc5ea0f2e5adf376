"""The ``fourm`` command line: one module per command group."""
