"""``python -m lungcad.cli``: the same as the ``lungcad`` command."""

import sys

from lungcad.cli import main

sys.exit(main())
