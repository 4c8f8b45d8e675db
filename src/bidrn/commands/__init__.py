"""Sub-commands of the ``bidrn`` command line, one module each (see :mod:`bidrn.cli`)."""
