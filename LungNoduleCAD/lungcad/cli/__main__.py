"""``python -m lungcad.cli``: the same as the ``lungcad`` command."""

import sys

from lungcad.cli import main

if __name__ == "__main__":  # importing the module (as import checks do) runs nothing
    sys.exit(main())
