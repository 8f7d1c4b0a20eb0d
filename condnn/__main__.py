"""``python -m condnn``: the ``condnn`` command line (see :mod:`condnn.cli`)."""
import sys

from condnn.cli import main

sys.exit(main())
