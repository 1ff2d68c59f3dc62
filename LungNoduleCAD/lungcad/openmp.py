"""OpenMP's wait policy for the processes that run the networks, set by their entry points.

Spinning OpenMP threads stall every parallel region once the cores are shared (measured: 1,317 ms
vs 353 ms per UNet slice on a busy 2-core machine). The OpenMP runtime reads ``OMP_WAIT_POLICY``
once, when torch loads it, so the entry points call :func:`prefer_passive_waits` before anything
imports torch: the ``lungcad`` command (:mod:`lungcad.__main__`), the training tree (whose
package only training processes import) and the Slicer module's worker process. Importing
:mod:`lungcad` changes no environment: Slicer's GUI process imports it too.
"""

from __future__ import annotations

import os

WAIT_POLICY = "OMP_WAIT_POLICY"


def prefer_passive_waits() -> None:
    """Idle OpenMP threads sleep instead of spinning, unless the user set a policy already."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")
