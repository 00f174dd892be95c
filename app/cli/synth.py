"""`radscribe synth study|dataset|preview|realism`: synthetic chest CT with known answers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.settings import Settings

if TYPE_CHECKING:
    from models.findings import Finding

# The generator needs the ML extra (numpy, scipy, pydicom, nibabel, Pillow): its modules
# are imported inside the handlers so that `radscribe` starts without them.
DEFAULT_REAL_CHEST = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "data"
    / "dicom"
    / "real_chest"
    / "lungpetctdx_A0002_siemens_sensation10"
)
REAL_SERIES = ("ct_series3_8mm_B40f", "ct_series2_8mm_B70f")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "synth", help="synthetic chest CT studies (DICOM, HL7, dictation, truth)"
    )
    synth_sub = parser.add_subparsers(
        title="synth commands", metavar="SYNTH_COMMAND", required=True
    )

    study = synth_sub.add_parser("study", help="write one study folder")
    study.add_argument(
        "--out", type=Path, required=True, help="study folder to create (must be empty or absent)"
    )
    study.add_argument("--seed", type=int, default=0)
    study.add_argument(
        "--finding",
        action="append",
        default=None,
        metavar="NAME",
        help="a finding slug (repeat); default: random; 'none' for a normal study",
    )
    study.add_argument(
        "--slices",
        type=int,
        default=None,
        help="number of slices (default: from the sampled slice thickness)",
    )
    study.add_argument("--matrix", type=int, default=512, help="rows and columns (default 512)")
    study.add_argument("--no-audio", action="store_true", help="dictation text only, no WAV")
    study.add_argument("--no-masks", action="store_true", help="skip the finding-mask NIfTI files")
    study.add_argument("--nifti", action="store_true", help="also write volume.nii.gz")
    study.set_defaults(handler=run_study, needs_settings=False)

    dataset = synth_sub.add_parser(
        "dataset", help="a train/valid/test data set in the CT-RATE layout"
    )
    dataset.add_argument("--n", type=int, required=True, help="number of studies")
    dataset.add_argument("--out", type=Path, required=True)
    dataset.add_argument("--seed", type=int, default=0, help="data set seed, 0..9999")
    dataset.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    dataset.add_argument(
        "--spacing", type=float, default=2.25, help="model grid spacing in mm (fast path)"
    )
    dataset.add_argument(
        "--matrix", type=int, default=160, help="model grid rows/columns (fast path)"
    )
    dataset.add_argument(
        "--full",
        action="store_true",
        help="render at acquisition resolution instead of the model grid",
    )
    dataset.add_argument(
        "--dicom-fraction", type=float, default=0.0, help="share of studies with a DICOM series"
    )
    dataset.add_argument(
        "--audio-fraction", type=float, default=0.0, help="share of dictations rendered to audio"
    )
    dataset.add_argument("--masks", action="store_true", help="write finding masks per study")
    dataset.set_defaults(handler=run_dataset, needs_settings=False)

    preview = synth_sub.add_parser(
        "preview", help="axial and coronal montages in lung and mediastinal windows"
    )
    preview.add_argument(
        "dir", type=Path, help="a study folder (with dicom/) or a folder holding one CT series"
    )
    preview.add_argument("--out", type=Path, required=True, help="PNG to write")
    preview.set_defaults(handler=run_preview, needs_settings=False)

    realism = synth_sub.add_parser(
        "realism", help="compare tissue HU and body/lung size with a real chest CT"
    )
    realism.add_argument(
        "--real",
        type=Path,
        default=DEFAULT_REAL_CHEST,
        help="a series folder, or a folder of series folders",
    )
    realism.add_argument("--n", type=int, default=3, help="synthetic studies per real series")
    realism.add_argument(
        "--sex",
        choices=("M", "F"),
        default="F",
        help="sex of the synthetic patients (the shared case is F)",
    )
    realism.set_defaults(handler=run_realism, needs_settings=False)


def _findings(names: list[str] | None) -> list[Finding] | None:
    from models.findings import Finding

    if names is None:
        return None
    if [n.lower() for n in names] == ["none"]:
        return []
    return [Finding.from_slug(n) for n in names]


def run_study(args: argparse.Namespace, settings: Settings) -> int:
    from app.services.synthetic_study import SpeechSynthesisError, write_synthetic_study
    from models.synthetic.study_files import StudyExistsError

    try:
        findings = _findings(args.finding)
        truth = write_synthetic_study(
            args.out,
            seed=args.seed,
            findings=findings,
            n_slices=args.slices,
            matrix=args.matrix,
            audio=not args.no_audio,
            masks=not args.no_masks,
            volume_nifti=args.nifti,
        )
    except (ValueError, StudyExistsError, SpeechSynthesisError) as exc:
        print(f"radscribe synth study: {exc}", file=sys.stderr)
        return 2
    present = [name for name, value in truth["labels"].items() if value]
    print(
        f"wrote {args.out} (accession {truth['study']['accession_number']}, "
        f"{truth['geometry']['slices']} slices)"
    )
    print(f"findings: {', '.join(present) if present else 'none'}")
    return 0


def run_dataset(args: argparse.Namespace, settings: Settings) -> int:
    from app.services.synthetic_study import SpeechSynthesisError, write_synthetic_dataset
    from models.synthetic.dataset import DatasetOptions

    try:
        options = DatasetOptions(
            n=args.n,
            seed=args.seed,
            fast=not args.full,
            spacing_mm=args.spacing,
            matrix=args.matrix,
            dicom_fraction=args.dicom_fraction,
            masks=args.masks,
            workers=args.workers,
        )
        if not 0.0 <= args.audio_fraction <= 1.0:
            raise ValueError("audio fraction must be between 0 and 1")

        def progress(done: int, total: int) -> None:
            print(f"\r{done}/{total} studies", end="", file=sys.stderr, flush=True)

        counts = write_synthetic_dataset(
            args.out, options, audio_fraction=args.audio_fraction, progress=progress
        )
    except (ValueError, SpeechSynthesisError) as exc:
        print(f"radscribe synth dataset: {exc}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    print(f"wrote {args.out}/dataset: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def run_preview(args: argparse.Namespace, settings: Settings) -> int:
    from models.synthetic.preview import SeriesReadError, write_preview
    from models.synthetic.study_files import DICOM_DIR

    series_dir = args.dir / DICOM_DIR if (args.dir / DICOM_DIR).is_dir() else args.dir
    if not series_dir.is_dir():
        print(f"radscribe synth preview: {args.dir} is not a folder", file=sys.stderr)
        return 2
    try:
        write_preview(series_dir, args.out)
    except SeriesReadError as exc:
        print(f"radscribe synth preview: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


def run_realism(args: argparse.Namespace, settings: Settings) -> int:
    from models.synthetic.preview import SeriesReadError
    from models.synthetic.realism import compare

    real: Path = args.real
    if not real.is_dir():
        print(f"radscribe synth realism: {real} is not a folder (pass --real)", file=sys.stderr)
        return 2
    dirs = [real / name for name in REAL_SERIES if (real / name).is_dir()] or [real]
    try:
        lines = compare(dirs, seeds=list(range(1, args.n + 1)), sex=args.sex)
    except SeriesReadError as exc:
        print(f"radscribe synth realism: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0
