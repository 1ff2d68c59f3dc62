"""The ``lungcad`` command line: phantoms, pictures, CT facts, the demo and benchmarks.

Each subcommand is a thin wrapper over an engine function; errors the engine raises on purpose
(:class:`~lungcad.errors.LungCADError`) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from lungcad import __version__, cli_detect, cli_evaluate
from lungcad.cli import options
from lungcad.cli_types import bounded_float, bounded_int
from lungcad.errors import LungCADError

log = logging.getLogger("lungcad")


def _cmd_phantom(args: argparse.Namespace) -> int:
    from lungcad.phantom import PhantomSize, RealismVersion, write_dataset
    from lungcad.phantom.stats import dataset_stats

    started = time.perf_counter()
    records = write_dataset(
        args.out_dir,
        cases=args.cases,
        seed=args.seed,
        size=PhantomSize(args.size),
        subsets=args.subsets,
        overwrite=args.overwrite,
        progress=not args.quiet,
        workers=args.workers,
        version=RealismVersion(args.realism_version),
    )
    elapsed = time.perf_counter() - started
    print(
        f"wrote {len(records)} {args.size} phantom cases to {args.out_dir} in {elapsed:.1f} s "
        f"(realism version {args.realism_version})"
    )
    for line in dataset_stats(args.out_dir).lines():
        print("  " + line)
    return 0


def _cmd_thicken(args: argparse.Namespace) -> int:
    from lungcad.luna16.thicken import thicken_dataset

    written = thicken_dataset(
        args.src, args.dst, args.slab_mm, overwrite=args.overwrite, progress=not args.quiet
    )
    slices = ", ".join(f"{s.slices_in}->{s.slices_out}" for s in written[:5])
    more = ", ..." if len(written) > 5 else ""
    print(
        f"wrote {len(written)} series averaged over {args.slab_mm:g} mm slabs to {args.dst} "
        f"(slices {slices}{more})"
    )
    return 0


def _cmd_implant(args: argparse.Namespace) -> int:
    from lungcad.phantom.implant_set import write_implanted_set

    written = write_implanted_set(
        args.hosts, args.out, copies=args.copies, nodules=args.nodules, seed=args.seed,
        overwrite=args.overwrite, progress=not args.quiet,
    )  # fmt: skip
    count = sum(s.nodules for s in written)
    print(
        f"wrote {len(written)} series with {count} implanted nodules to {args.out} "
        f"({len(args.hosts)} host scan(s) x {args.copies} copies)"
    )
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from lungcad.ctio import read_ct
    from lungcad.show import parse_point, render_views

    target = Path(args.out)
    if target.is_dir():
        raise LungCADError(f"{target}: is a folder; --out names the PNG file to write")
    if (target.exists() or target.is_symlink()) and not args.overwrite:
        raise LungCADError(f"{target}: already exists; pass --overwrite to replace it")
    ct = read_ct(args.ct, series_uid=args.series_uid)
    at = parse_point(args.at)
    out = render_views(ct, at, Path(args.out), crop_mm=args.crop_mm, title=args.title)
    print(f"wrote {out}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from lungcad.ctio import read_ct

    ct = read_ct(args.ct, series_uid=args.series_uid)
    g = ct.geometry
    print(ct.describe())
    print(f"  origin (LPS mm): {tuple(round(v, 3) for v in g.origin_xyz)}")
    print(f"  direction: {tuple(round(v, 4) for v in g.direction)}")
    for key, value in sorted(ct.metadata.items()):
        print(f"  {key}: {value}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    """Print timings and memory (a benchmark, never a test): the cascade or phantom generation.

    Without ``--target``, ``--size`` or ``--cases`` (phantom options) select the phantom target.
    """
    target = args.target
    if target is None:
        target = "phantom" if args.size is not None or args.cases is not None else "cascade"
    if target == "real":
        from lungcad.benchmark_real import RealBenchOptions, run_real_bench

        return run_real_bench(
            RealBenchOptions(
                real_dir=args.real_dir,
                scans=tuple(args.scans) if args.scans else None,
                weights=args.models,
                phantoms=args.phantoms,
                phantom_dir=args.phantom_dir,
                device=args.device,
                precision=args.precision,
            )
        )
    if target == "cascade":
        from lungcad.benchmark import CascadeBenchOptions, run_cascade_bench

        return run_cascade_bench(
            CascadeBenchOptions(
                ct=args.ct,
                seed=args.seed,
                case=args.case,
                device=args.device,
                threads=args.threads,
                slice_batch=args.slice_batch,
                crop_batch=args.crop_batch,
                channels_last=not args.no_channels_last,
                mirror_nodule=not args.no_mirror,
                precision=args.precision,
                lung_region=not args.whole_volume,
                weights=args.models,
                compare_bf16=args.compare_bf16,
            )
        )
    args.size = args.size or "full"
    args.cases = args.cases or 3
    return _bench_phantom(args)


def _bench_phantom(args: argparse.Namespace) -> int:
    """How long phantom generation takes per case."""
    from lungcad.ctio import write_ct
    from lungcad.phantom import PhantomSize
    from lungcad.phantom.cases import make_spec, render_spec

    size = PhantomSize(args.size)
    print(f"phantom benchmark: {args.cases} {size.value} cases, seed {args.seed}, one process")
    totals = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.cases):
            t0 = time.perf_counter()
            spec = make_spec(args.seed, index)
            t1 = time.perf_counter()
            case = render_spec(spec, size)
            t2 = time.perf_counter()
            write_ct(case.ct, Path(tmp) / f"{index}.mhd")
            t3 = time.perf_counter()
            totals.append(t2 - t0)
            nz, ny, nx = case.ct.shape
            print(
                f"  case {index}: {nx}x{ny}x{nz} voxels: "
                f"anatomy {t1 - t0:.2f} s, render {t2 - t1:.2f} s, write .mhd {t3 - t2:.2f} s"
            )
    print(f"generation per case: mean {sum(totals) / len(totals):.2f} s, max {max(totals):.2f} s")
    from lungcad.peak_memory import peak_rss_mb

    peak = peak_rss_mb()
    print(f"peak memory (RSS): {'unknown' if peak is None else f'{peak:.0f}'} MB")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lungcad", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lungcad {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("phantom", help="write synthetic chest CTs in the LUNA16 layout")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--cases", type=bounded_int(1), default=10, help="cases to write (10)")
    options.add_seed(p, 0)
    p.add_argument("--size", choices=["small", "full"], default="full")
    p.add_argument("--subsets", type=int, default=1, help="spread cases over subset0..subsetK-1")
    p.add_argument(
        "--workers", type=bounded_int(1), default=1,
        help="cases made in parallel processes (same bytes; 1)",
    )  # fmt: skip
    options.add_overwrite(p, "replace a dataset already there")
    options.add_quiet(p)
    p.add_argument(
        "--realism-version", type=int, choices=[1, 2], default=1,
        help="the phantoms' look: 1 = the bundled weights' training sets, byte for byte "
        "(default); 2 = closer to real CT: 0.6-5 mm slices averaged over their thickness, "
        "~30%% contrast-enhanced, denser peripheral vessels, fissures, atelectasis bands "
        "(recorded in phantom.json; docs/phantoms.md)",
    )  # fmt: skip
    p.set_defaults(func=_cmd_phantom)

    p = sub.add_parser(
        "thicken",
        help="copy a LUNA16-layout set with every series averaged over thick slabs (e.g. 5 mm)",
    )
    p.add_argument("src", type=Path, help="a LUNA16-layout set (subset*/<uid>.mhd + truth csv)")
    p.add_argument("dst", type=Path, help="the new set's folder")
    p.add_argument(
        "--slab-mm", type=bounded_float(0.0, lo_open=True), default=5.0,
        help="slice thickness to make (5)",
    )  # fmt: skip
    options.add_overwrite(p, "replace series already there")
    options.add_quiet(p)
    p.set_defaults(func=_cmd_thicken)

    p = sub.add_parser(
        "implant",
        help="copies of real CTs with synthetic nodules drawn into their lungs, in the LUNA16 "
        "layout (sensitivity on real anatomy)",
    )
    p.add_argument("hosts", nargs="+", type=Path, help="real CT files or DICOM series folders")
    options.add_out(p, help="the new set's folder")
    p.add_argument("--copies", type=bounded_int(1, 1000), default=5, help="series per host (5)")
    p.add_argument("--nodules", type=bounded_int(1, 20), default=3, help="nodules per series (3)")
    options.add_seed(p, 9000)
    options.add_overwrite(p, "replace a set already there")
    options.add_quiet(p)
    p.set_defaults(func=_cmd_implant)

    p = sub.add_parser("show", help="three orthogonal slices and a zoom through a point, as PNG")
    p.add_argument("ct", type=Path, help="CT file or DICOM series folder")
    p.add_argument("--at", required=True, help="LPS point in mm: X,Y,Z")
    options.add_out(p, help="PNG to write")
    options.add_overwrite(p, "replace --out if it exists")
    p.add_argument(
        "--crop-mm", type=bounded_float(5.0, 500.0), default=60.0,
        help="width of the zoomed view in mm, 5-500 (60)",
    )  # fmt: skip
    p.add_argument("--title", default=None)
    options.add_series_uid(p)
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("info", help="what a CT file holds: size, spacing, HU range, geometry")
    p.add_argument("ct", type=Path, help="CT file or DICOM series folder")
    options.add_series_uid(p)
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("bench", help="print timings and memory (benchmarks, not tests)")
    p.add_argument(
        "--target", choices=["cascade", "phantom", "real"], default=None,
        help="cascade (default), phantom generation (default when --size/--cases are given) or "
        "real: the cascade and realism statistics on the real CT samples beside phantoms",
    )  # fmt: skip
    p.add_argument("--size", choices=["small", "full"], default=None, help="phantom: full")
    p.add_argument(
        "--cases", type=bounded_int(1), default=None, help="phantom: cases to render (3)"
    )
    options.add_seed(p, 0, "phantom seed")
    p.add_argument(
        "--case", type=bounded_int(0), default=0, help="cascade target: phantom case index"
    )
    p.add_argument("--ct", type=Path, default=None, help="cascade target: a CT instead")
    options.add_models(p)
    options.add_device(p)
    p.add_argument(
        "--threads", type=bounded_int(1, 1024), default=None, help="torch CPU threads (>= 1)"
    )
    p.add_argument(
        "--slice-batch", type=bounded_int(1, 4096), default=None,
        help="UNet slices per call (>= 1)",
    )  # fmt: skip
    p.add_argument(
        "--crop-batch", type=bounded_int(1, 65536), default=None,
        help="classifier crops per call (>= 1)",
    )  # fmt: skip
    p.add_argument("--no-channels-last", action="store_true", help="UNet in NCHW layout")
    options.add_mirror(p)
    options.add_precision(p)
    p.add_argument("--whole-volume", action="store_true", help="UNet on every slice, all of it")
    p.add_argument(
        "--compare-bf16", type=bounded_int(0), default=0, metavar="N",
        help="also run N slices in float32 and bf16 and print the map difference",
    )  # fmt: skip
    p.add_argument(
        "--real-dir", type=Path, default=None,
        help="real target: the real CT samples (default $LUNGCAD_REAL_DATA, else shared/data/real "
        "beside the checkout)",
    )  # fmt: skip
    p.add_argument(
        "--scans", nargs="+", default=None, metavar="NAME",
        help="real target: only these real scans (chest_cta_totalseg, chest_cta_totalseg_5mm, "
        "dicom_totalseg, dicom_lungmask; default all)",
    )  # fmt: skip
    p.add_argument(
        "--phantoms", type=bounded_int(0), default=2,
        help="real target: full-size phantoms (seed 7000, cases 0..N-1) beside them (2; 0: none)",
    )  # fmt: skip
    p.add_argument(
        "--phantom-dir", type=Path, default=None,
        help="real target: take the phantoms from this LUNA16-layout set instead of rendering",
    )  # fmt: skip
    p.set_defaults(func=_cmd_bench)

    cli_evaluate.add_parser(sub)
    cli_detect.add_parsers(sub)
    return parser


def _join_negative_values(argv: Sequence[str]) -> list[str]:
    """Let ``--at -12,3,4`` through: argparse would take '-12,3,4' for an option."""
    out: list[str] = []
    it = iter(argv)
    for token in it:
        if token == "--at":
            value = next(it, None)
            out.append(f"--at={value}" if value is not None else token)
        else:
            out.append(token)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(_join_negative_values(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except LungCADError as exc:
        print(f"lungcad {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"lungcad {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
