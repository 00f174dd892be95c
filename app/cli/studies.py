"""`radscribe studies list [--json]`: studies, series, counts, selection, job and report."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from app.core.db import make_engine, make_session_factory
from app.core.settings import Settings
from app.services.study_overview import list_studies

DEFAULT_LIMIT = 100


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("studies", help="received studies and their series")
    studies_sub = parser.add_subparsers(
        title="studies commands", metavar="STUDIES_COMMAND", required=True
    )
    listing = studies_sub.add_parser(
        "list", help="studies with series, instance counts, ready and selection state"
    )
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.add_argument("--limit", type=int, default=DEFAULT_LIMIT)
    listing.set_defaults(handler=run_list)


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    engine = make_engine(settings.effective_database_url)
    try:
        with make_session_factory(engine)() as session:
            studies = list_studies(session, limit=args.limit)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps({"studies": [asdict(study) for study in studies]}, indent=2))
        return 0
    if not studies:
        print("no studies received")
        return 0
    for study in studies:
        job = f"  job {study.job.state}" if study.job else ""
        report = (
            f"  report v{study.report.version_number} {study.report.kind}" if study.report else ""
        )
        print(
            f"{study.study_instance_uid}  acc={study.accession_number or '-'}  "
            f"{study.status}  {study.instance_count} instances{job}{report}"
        )
        for series in study.series:
            mark = "*" if series.selected else " "
            ready = "ready" if series.ready else "not ready"
            reason = f"  ({series.skip_reason})" if series.skip_reason else ""
            print(
                f"  {mark} #{series.series_number if series.series_number is not None else '-':<4} "
                f"{series.modality:<3} {series.instance_count:>5}  {series.state:<9} {ready:<9} "
                f"{series.description[:40]}{reason}"
            )
    return 0
