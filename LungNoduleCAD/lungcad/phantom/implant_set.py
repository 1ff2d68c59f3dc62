"""``lungcad implant``: real host scans with synthetic nodules, written in the LUNA16 layout.

Each host gives ``copies`` series, each with its own nodules (:func:`implant_nodules`), so one
small real scan still yields enough nodules for a sensitivity figure. The truth files are the
phantoms' (``annotations.csv``, ``annotations_with_malignancy.csv``, ``phantom_nodules.csv``;
no ``candidates.csv``), so ``lungcad detect`` and ``lungcad evaluate`` score the set as they
score a phantom set; ``implant.json`` records the hosts, their content digests and the seed.

A set made from a scan that training must not see (docs/real-ct.md names the held-out scan) is for
evaluation only.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lungcad import __version__
from lungcad.atomic import write_text_atomic
from lungcad.ct import CT
from lungcad.ctio import read_ct, write_ct, write_label_map
from lungcad.lungs import parenchyma_mask
from lungcad.phantom.dataset import (
    ANNOTATION_COLUMNS,
    MALIGNANCY_COLUMNS,
    NODULE_COLUMNS,
    NODULE_TRUTH_FILES,
    nodule_rows,
    refuse_existing,
    write_csv_atomic,
)
from lungcad.phantom.implant import host_noise_sd, implant_nodules, implanted_series_uid

log = logging.getLogger(__name__)

MANIFEST = "implant.json"


@dataclass(frozen=True)
class ImplantedSeries:
    """One written series: where it came from and what it holds."""

    series_uid: str
    host: Path
    copy: int
    ct_path: Path
    nodules: int
    noise_sd_hu: float


def host_digest(ct: CT) -> str:
    """A short digest of a host's voxels and grid: the same scan gives the same series UIDs."""
    h = hashlib.sha256(np.ascontiguousarray(ct.hu).tobytes())
    h.update(repr(ct.geometry).encode())
    return h.hexdigest()[:16]


def write_implanted_set(
    hosts: list[Path],
    out_dir: str | Path,
    *,
    copies: int,
    nodules: int,
    seed: int,
    overwrite: bool = False,
    progress: bool = True,
) -> list[ImplantedSeries]:
    """Write ``copies`` implanted series of each host into ``out_dir``/subset0 with truth files.

    Copy k of a host draws from its own random stream (seed, host digest, k), so adding hosts or
    copies leaves the others' series unchanged.
    """
    if copies < 1 or nodules < 1:
        raise ValueError(f"copies and nodules must be at least 1, got {copies} and {nodules}")
    if not hosts:
        raise ValueError("no host scan given")
    out = Path(out_dir)
    refuse_existing(out, overwrite)
    folder = out / "subset0"
    rows: dict[str, list[tuple]] = {name: [] for name in NODULE_TRUTH_FILES}
    written: list[ImplantedSeries] = []
    bar = tqdm(total=len(hosts) * copies, desc="implant", disable=not progress)
    for host_path in hosts:
        host = read_ct(host_path)
        digest = host_digest(host)
        lungs, noise = parenchyma_mask(host), host_noise_sd(host)  # once per host, not per copy
        for copy in range(copies):
            uid = implanted_series_uid(digest, seed, copy)
            stream = int.from_bytes(hashlib.sha256(f"{digest}:{seed}:{copy}".encode()).digest()[:8])
            result = implant_nodules(
                host, nodules, np.random.default_rng(stream), series_uid=uid, lungs=lungs,
                noise_sd_hu=noise,
            )  # fmt: skip
            ct_path = write_ct(result.ct, folder / f"{uid}.mhd", overwrite=overwrite)
            write_label_map(
                result.labels,
                result.ct.geometry,
                folder / f"{uid}_nodules.nrrd",
                overwrite=overwrite,
            )
            for name, new in nodule_rows(
                uid, result.nodules, result.labels, result.ct.geometry, 0
            ).items():
                rows[name] += new
            written.append(
                ImplantedSeries(
                    uid, host_path, copy, ct_path, len(result.nodules), result.noise_sd_hu
                )
            )
            bar.update()
    bar.close()
    write_csv_atomic(out / "annotations.csv", ANNOTATION_COLUMNS, rows["annotations.csv"])
    write_csv_atomic(
        out / "annotations_with_malignancy.csv",
        MALIGNANCY_COLUMNS,
        rows["annotations_with_malignancy.csv"],
    )
    write_csv_atomic(out / "phantom_nodules.csv", NODULE_COLUMNS, rows["phantom_nodules.csv"])
    manifest = {
        "generator": "lungcad implant",
        "lungcad_version": __version__,
        "seed": seed,
        "copies": copies,
        "nodules_per_series": nodules,
        "series": [
            {
                "seriesuid": s.series_uid,
                "host": str(s.host),
                "copy": s.copy,
                "nodules": s.nodules,
                "host_noise_sd_hu": round(s.noise_sd_hu, 2),
            }
            for s in written
        ],
    }
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    log.info("wrote %d implanted series to %s", len(written), out)
    return written
