"""Sub-commands of the ``gen1`` command, one module each (see :mod:`gen1.cli`)."""
