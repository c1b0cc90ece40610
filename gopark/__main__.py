"""``python -m gopark``: the ``gopark`` command (``build``, ``options``, ``--version``)."""
import sys

from gopark.cli import main

sys.exit(main())
