"""The database itself refuses what the domain forbids, whatever code path writes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.core.domain import ReportKind, Role
from app.core.tables import Instance, Report, ReportVersion, Series, Study, User


def _series(session: Session) -> Series:
    study = Study(study_instance_uid="1.2.826.0.1.3680043.8.498.1")
    series = Series(study=study, series_instance_uid="1.2.826.0.1.3680043.8.498.2", modality="CT")
    session.add_all([study, series])
    session.flush()
    return series


def _instance(series: Series, uid: str) -> Instance:
    return Instance(
        series=series,
        sop_instance_uid=uid,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        storage_path=f"dicom/{uid}.dcm",
        size_bytes=1024,
        content_digest="blake3:" + "0" * 64,
    )


def test_duplicate_sop_instance_uid_is_refused(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        series = _series(session)
        session.add(_instance(series, "1.2.3.4"))
        session.commit()
        session.add(_instance(series, "1.2.3.4"))
        with pytest.raises(IntegrityError):
            session.commit()


def _version(report: Report, kind: ReportKind, **fields: object) -> ReportVersion:
    return ReportVersion(
        report=report,
        version_number=fields.pop("version_number", 1),
        kind=kind,
        ai_generated=fields.pop("ai_generated", False),
        structured={},
        rendered_text="",
        **fields,
    )


def test_final_without_signer_is_refused(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        report = Report(study_id=_series(session).study_id)
        session.add(report)
        session.add(_version(report, ReportKind.FINAL))
        with pytest.raises(IntegrityError):
            session.commit()


def test_final_with_signer_is_accepted(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        signer = User(username="dr.house", role=Role.RADIOLOGIST, password_hash=None)
        report = Report(study_id=_series(session).study_id)
        session.add_all([signer, report])
        session.flush()
        session.add(
            _version(report, ReportKind.FINAL, signer_id=signer.id, signed_at=datetime.now(UTC))
        )
        session.commit()


def test_ai_generated_version_cannot_be_final(session_factory: sessionmaker[Session]) -> None:
    """Only drafts may be AI-generated: what is signed is a human's version."""
    with session_factory() as session:
        signer = User(username="dr.grey", role=Role.RADIOLOGIST, password_hash=None)
        report = Report(study_id=_series(session).study_id)
        session.add_all([signer, report])
        session.flush()
        session.add(
            _version(
                report,
                ReportKind.FINAL,
                ai_generated=True,
                signer_id=signer.id,
                signed_at=datetime.now(UTC),
            )
        )
        with pytest.raises(IntegrityError):
            session.commit()


def test_report_version_numbers_are_unique(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        report = Report(study_id=_series(session).study_id)
        session.add(report)
        session.add(_version(report, ReportKind.DRAFT, ai_generated=True))
        session.add(_version(report, ReportKind.DRAFT, ai_generated=True))
        with pytest.raises(IntegrityError):
            session.commit()


def test_unknown_state_value_is_refused(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        series = _series(session)
        session.commit()
        with pytest.raises(IntegrityError):
            session.connection().exec_driver_sql(
                f"UPDATE series SET state = 'bogus' WHERE id = {series.id}"
            )
