"""The ``lungcad`` command (and ``python -m lungcad``): OpenMP's wait policy, then the CLI."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lungcad.openmp import prefer_passive_waits


def main(argv: Sequence[str] | None = None) -> int:
    prefer_passive_waits()
    from lungcad.cli import main as cli_main  # loads torch, so after the wait policy

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
