"""The ``dicomnet`` command: one module per command group, the listen service, workers, metrics.

The only layer that reads flags, TOML and signals; it composes the layers
below into running programs.

May import: anything.
"""
