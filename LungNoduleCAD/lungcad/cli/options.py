"""The options the command lines share, defined once: name, old spellings, check, default, help.

``lungcad`` (every subcommand), Slicer batch mode (``LungNoduleCADLib.batch``), the GUI's worker
and ``lungcad-train`` add their device, precision, thresholds, weights, output, overwrite, quiet
and seed options here. Old spellings stay as aliases (:data:`ALIASES`). Values are checked by the
types of :mod:`lungcad.cli_types`, so a bad value is a usage error (exit status 2) before any work.
Options that fill a dataclass take their default from the field (:func:`add_field`), so a default
is written once, in the dataclass, and the help shows it.

Torch-free at import (the pipeline's types are imported where an option needs them), so the GUI's
worker can parse its options and still report a missing PyTorch in its own words.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lungcad.cli_types import choice_of, probability, segmentation_probability
from lungcad.devices import DEVICES, Device, Precision

if TYPE_CHECKING:
    from lungcad.thresholds import Thresholds

#: Old spellings that still parse, by the option they stand for.
ALIASES: dict[str, tuple[str, ...]] = {"--models": ("--weights",), "--out": ("--output",)}
PRECISION_HELP = (
    "arithmetic of the networks: auto = bf16 where the device has bf16 matrix units (AMX CPUs, "
    "recent GPUs; 2-3x faster there), else float32 (default auto)"
)
THRESHOLD_NAMES = ("segmentation", "nodule", "malignancy")
_THRESHOLD_HELP = {
    "segmentation": "cut of the UNet's probability map",
    "nodule": "p(nodule) a candidate needs to be a finding",
    "malignancy": "p(malignant) from which a finding is suspicious",
}


def add_device(
    parser: argparse.ArgumentParser, help: str = "", default: Device = Device.AUTO
) -> None:
    """``--device auto|cpu|cuda`` (a :class:`~lungcad.devices.Device`)."""
    parser.add_argument(
        "--device",
        type=choice_of(Device),
        default=default,
        metavar="{" + ",".join(DEVICES) + "}",
        help=help or "auto: CUDA when PyTorch sees a GPU, else the CPU (default auto)",
    )


def add_precision(parser: argparse.ArgumentParser) -> None:
    """``--precision auto|float32|bf16`` (a value of :class:`Precision`)."""
    parser.add_argument(
        "--precision",
        choices=[p.value for p in Precision],
        default=Precision.AUTO.value,
        help=PRECISION_HELP,
    )


def add_mirror(parser: argparse.ArgumentParser) -> None:
    """``--no-mirror``: one view of the nodule classifier (see :mod:`lungcad.pipeline.classify`)."""
    parser.add_argument(
        "--no-mirror",
        action="store_true",
        help="score candidates with one view of the nodule classifier, not the mean of 4 mirrors",
    )


def add_models(
    parser: argparse.ArgumentParser,
    *,
    required: bool = False,
    help: str = "weights folder (default: the bundled weights)",
) -> None:
    """``--models`` (alias ``--weights``): the weights to run."""
    parser.add_argument(
        "--models", *ALIASES["--models"], dest="models", type=Path, required=required,
        default=None, metavar="PATH", help=help,
    )  # fmt: skip


def add_out(
    parser: argparse.ArgumentParser,
    *,
    help: str,
    required: bool = True,
    default: Path | None = None,
) -> None:
    """``--out`` (alias ``--output``): where the command writes."""
    parser.add_argument(
        "--out", *ALIASES["--out"], dest="out", type=Path, required=required, default=default,
        help=help,
    )  # fmt: skip


def add_overwrite(parser: argparse.ArgumentParser, help: str = "replace outputs already there"):
    parser.add_argument("--overwrite", action="store_true", help=help)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_seed(parser: argparse.ArgumentParser, default: int, help: str = "random seed") -> None:
    parser.add_argument("--seed", type=int, default=default, help=f"{help} (default {default})")


def add_series_uid(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--series-uid", default=None, help="pick one series from a DICOM folder")


def add_thresholds(
    parser: argparse.ArgumentParser,
    names: tuple[str, ...] = THRESHOLD_NAMES,
    *,
    overrides: bool = False,
) -> None:
    """``--<name>-threshold P`` for each name: a probability (the segmentation cut in (0, 1],
    as the detector groups the map at or above it). Defaults are :class:`Thresholds`'; with
    ``overrides`` the default is None (keep what the results say)."""
    from lungcad.thresholds import Thresholds

    defaults = Thresholds()
    for name in names:
        default = None if overrides else getattr(defaults, name)
        parser.add_argument(
            f"--{name}-threshold",
            type=segmentation_probability if name == "segmentation" else probability,
            default=default,
            metavar="P",
            help=f"override results.json's {name} threshold"
            if overrides
            else f"{_THRESHOLD_HELP[name]} (default {default})",
        )


def thresholds_from(args: argparse.Namespace) -> Thresholds:
    """The :class:`Thresholds` that :func:`add_thresholds` parsed."""
    from lungcad.thresholds import Thresholds

    return Thresholds(
        segmentation=args.segmentation_threshold,
        nodule=args.nodule_threshold,
        malignancy=args.malignancy_threshold,
    )


# --- options that fill a dataclass ---------------------------------------------------------------


def field_default(cls: type, name: str) -> Any:
    """The default of the dataclass field ``cls.name`` (its factory's value where it has one)."""
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise ValueError(f"{cls.__name__}.{name} has no default")


def _shown(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, tuple | list):
        return " ".join(_shown(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def add_field(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    name: str,
    *flags: str,
    help: str,
    **kwargs: Any,
) -> argparse.Action:
    """An option that sets the dataclass field ``cls.name``: its ``dest`` is the field's name and
    its default the field's default, shown at the end of the help ("(default ...)") unless the
    default is None or the option is a switch (``store_true``/``store_false``)."""
    default = field_default(cls, name)
    switch = kwargs.get("action") in ("store_true", "store_false")
    text = help if default is None or switch else f"{help} (default {_shown(default)})"
    return parser.add_argument(*flags, dest=name, default=default, help=text, **kwargs)


def dataclass_fields(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The parsed values whose ``dest`` names a field of ``cls`` (see :func:`add_field`)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}
