"""`radscribe draft STUDY_DIR`: run the drafting model on one study and print the result.

Context comes from an HL7 order file (``--order``: reason for exam and history
from OBR-31/OBR-13/NTE via ``app.emr.parse``) and a dictation, either as audio
(``--dictation``: transcribed by ``app.speech``'s Whisper) or as text
(``--transcript``).  Bad input ends with a typed error message and a non-zero
exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.settings import Settings
from models.errors import CheckpointError, ModelInputError

if TYPE_CHECKING:
    from models.inference import DraftResult
    from models.networks.gating import DictationQuality

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_BAD_STUDY = 3
EXIT_BAD_CONTEXT = 4
PROBABILITY_DIGITS = 3


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "draft", help="draft structured chest CT findings for one study (AI, unverified)"
    )
    parser.add_argument("study_dir", type=Path, help="folder of the study's DICOM files (or NIfTI)")
    parser.add_argument("--order", type=Path, help="HL7 v2 order message (ORM/OMI) file")
    dictation = parser.add_mutually_exclusive_group()
    dictation.add_argument("--dictation", type=Path, help="dictation audio file (Whisper)")
    dictation.add_argument("--transcript", help="dictation text, already transcribed")
    parser.add_argument("--checkpoint", type=Path, help="model checkpoint (default: settings)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--precision", choices=("fp32", "int8", "bf16"), help="default: int8 on CPU, bf16 on CUDA"
    )
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(handler=run_draft)


def order_context(path: Path) -> str:
    """Reason for exam and clinical history of the order(s) in an HL7 file."""
    from app.emr.parse import parse

    message = parse(path.read_bytes())
    parts: list[str] = []
    for order in message.orders:
        if order.reason_for_exam:
            parts.append(f"Reason for exam: {order.reason_for_exam}")
        if order.clinical_history:
            parts.append(f"History: {order.clinical_history}")
    return "\n".join(parts)


def transcribe(path: Path, settings: Settings) -> tuple[str, DictationQuality]:
    from app.services.dictation import make_transcriber
    from app.services.drafting import dictation_quality
    from app.speech.audio import decode_audio

    transcript = make_transcriber(settings).transcribe(decode_audio(path))
    return transcript.text, dictation_quality(transcript.quality.to_dict())


def _fail(message: str, status: int) -> int:
    print(f"radscribe draft: {message}", file=sys.stderr)
    return status


def run_draft(args: argparse.Namespace, settings: Settings) -> int:
    from app.services.model_loading import ModelGovernanceError, resolve_checkpoint
    from models.inference import Drafter

    emr_text: str | None = None
    transcript: str | None = args.transcript
    dictation_quality: DictationQuality | None = None
    try:
        if args.order is not None:
            emr_text = order_context(args.order) or None
        if args.dictation is not None:
            transcript, dictation_quality = transcribe(args.dictation, settings)
    except (OSError, ValueError) as exc:  # HL7 MalformedMessage and AudioError are ValueErrors
        return _fail(f"cannot read the order or dictation: {exc}", EXIT_BAD_CONTEXT)

    if args.checkpoint is not None:
        settings = settings.model_copy(update={"checkpoint": args.checkpoint})
    try:
        loaded = resolve_checkpoint(settings)
        drafter = Drafter(loaded, device=args.device, precision=args.precision)
        result = drafter.draft(
            args.study_dir,
            emr_text=emr_text,
            transcript=transcript,
            dictation_quality=dictation_quality,
        )
    except (CheckpointError, ModelGovernanceError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except ModelInputError as exc:
        return _fail(str(exc), EXIT_BAD_STUDY)

    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(_summary(result))
    return EXIT_OK


def _summary(result: DraftResult) -> str:
    lines = [
        f"model {result.model_version} ({result.precision} on {result.device})"
        + ("" if result.validated_for_clinical_use else " - NOT VALIDATED FOR CLINICAL USE"),
        f"series {result.series_instance_uid}",
        "modality weights: "
        + ", ".join(
            f"{m} {w:.2f}" if result.modalities_present[m] else f"{m} absent"
            for m, w in result.modality_weights.items()
        ),
        "findings (probability, * = above threshold):",
    ]
    for slug, p in sorted(result.probabilities.items(), key=lambda item: -item[1]):
        mark = "*" if result.decisions[slug] else " "
        where = result.evidence[slug].location
        lines.append(
            f"  {mark} {slug:36s} {p:.{PROBABILITY_DIGITS}f}  evidence slice {where.slice_index}"
            f" (instance {where.instance_number})"
        )
    lines.append(f"nodules: {len(result.nodules)}")
    for nodule in result.nodules:
        lines.append(
            f"  {nodule.diameter_mm:.1f} mm {nodule.nodule_type}, {nodule.lobe},"
            f" slice {nodule.location.slice_index} (p={nodule.probability:.2f})"
        )
    lines.extend(f"warning: {w}" for w in result.warnings)
    total = sum(v for k, v in result.timings.items() if k.endswith("batch_s"))
    lines.append(f"time: {total:.2f} s")
    return "\n".join(lines)
