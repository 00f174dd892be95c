"""The report as the editor shows it: titled text sections, from a draft or a human version.

An AI draft (a :class:`StructuredReport`) becomes one text box per part of the
report and per organ system; what the radiologist saves or signs is the list
of ``(name, text)`` sections that :mod:`app.services.signing` stores.  The
organ systems travel to the EMR as one "findings" section whose lines start
with the organ's title, and are split back into boxes when the editor reopens.

Saving a working copy (not signed) writes a human, unsigned ``draft``
version; signing goes through :func:`app.services.signing.sign_report` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.domain import ReportKind
from app.core.tables import Report, ReportVersion, Study, User
from app.reporting.draft import place_dictated_findings
from app.reporting.organs import ORGAN_SYSTEMS
from app.reporting.schema import StructuredReport
from app.services import audit
from app.services.signing import ADDENDUM_SECTION, render

FINDINGS = "findings"
OTHER_FINDINGS = "other"
MAX_SECTION_CHARS = 20_000


@dataclass(frozen=True)
class EditorSection:
    key: str
    title: str
    text: str
    organ: bool = False


HEAD_SECTIONS: tuple[tuple[str, str], ...] = (
    ("clinical_history", "Clinical information"),
    ("technique", "Technique"),
    ("comparison", "Comparison"),
)
ORGAN_SECTIONS: tuple[tuple[str, str], ...] = (
    *((organ.key, organ.title) for organ in ORGAN_SYSTEMS),
    (OTHER_FINDINGS, "Other findings"),
)
TAIL_SECTIONS: tuple[tuple[str, str], ...] = (
    ("impression", "Impression"),
    ("recommendations", "Recommendations"),
)
ALL_SECTIONS = (*HEAD_SECTIONS, *ORGAN_SECTIONS, *TAIL_SECTIONS)
_ORGAN_KEYS = frozenset(key for key, _ in ORGAN_SECTIONS)
_TITLE_OF = dict(ALL_SECTIONS)
_ORGAN_BY_TITLE = {title.lower(): key for key, title in ORGAN_SECTIONS}


class EditError(ValueError):
    """The edited report cannot be saved; the message says why."""


def _blank() -> dict[str, str]:
    return {key: "" for key, _ in ALL_SECTIONS}


def _as_editor(texts: Mapping[str, str]) -> list[EditorSection]:
    return [
        EditorSection(key=key, title=title, text=texts.get(key, ""), organ=key in _ORGAN_KEYS)
        for key, title in ALL_SECTIONS
    ]


def from_structured(report: StructuredReport) -> list[EditorSection]:
    texts = _blank()
    texts["clinical_history"] = report.clinical_information
    texts["technique"] = report.technique
    texts["comparison"] = report.comparison
    for section in report.sections:
        key = section.key if section.key in _ORGAN_KEYS else OTHER_FINDINGS
        if section.text:
            body = section.text
        else:
            parts = [section.dictated or "", *(s.text for s in section.statements)]
            body = " ".join(p.strip() for p in parts if p.strip())
        texts[key] = " ".join(p for p in (texts[key], body) if p)
    impression = [report.dictated_impression or ""]
    impression += [f"{n}. {line}" for n, line in enumerate(report.impression, start=1)]
    texts["impression"] = "\n".join(line for line in impression if line.strip())
    texts["recommendations"] = "\n".join(report.recommendations)
    return _as_editor(texts)


def split_findings(text: str) -> dict[str, str]:
    """A "findings" text back into organ sections (lines "Title: text")."""
    placed: dict[str, list[str]] = {}
    current = OTHER_FINDINGS
    for line in text.splitlines():
        head, sep, rest = line.partition(":")
        key = _ORGAN_BY_TITLE.get(head.strip().lower()) if sep else None
        if key is not None:
            current = key
            line = rest
        if line.strip():
            placed.setdefault(current, []).append(line.strip())
    return {key: "\n".join(lines) for key, lines in placed.items()}


def from_sections(sections: Sequence[Sequence[str]]) -> list[EditorSection]:
    texts = _blank()
    for name, body in ((str(pair[0]), str(pair[1])) for pair in sections):
        if name == FINDINGS:
            texts.update(split_findings(body))
        elif name in texts:
            texts[name] = body
        else:
            texts[OTHER_FINDINGS] = "\n".join(t for t in (texts[OTHER_FINDINGS], body) if t)
    return _as_editor(texts)


def editor_sections(version: ReportVersion | None) -> list[EditorSection]:
    """What the editor opens with: the latest version's text, or empty boxes."""
    if version is None:
        return _as_editor(_blank())
    if version.ai_generated:
        try:
            return from_structured(StructuredReport.model_validate(version.structured))
        except ValidationError:
            return from_sections([[FINDINGS, version.rendered_text]])
    return from_sections(version.structured.get("sections", []))


def to_signed_sections(texts: Mapping[str, str]) -> list[tuple[str, str]]:
    """Editor boxes to the stored sections: organ boxes join into one findings section."""
    unknown = sorted(set(texts) - set(_TITLE_OF) - {ADDENDUM_SECTION})
    if unknown:
        raise EditError(f"unknown report sections: {', '.join(unknown)}")
    for key, body in texts.items():
        if len(body) > MAX_SECTION_CHARS:
            raise EditError(f"{_TITLE_OF.get(key, key)} is longer than {MAX_SECTION_CHARS} chars")
    clean = {key: body.replace("\r\n", "\n").strip() for key, body in texts.items()}
    sections = [(key, clean[key]) for key, _ in HEAD_SECTIONS if clean.get(key)]
    findings = [
        f"{title}: {clean[key]}" if key != OTHER_FINDINGS else clean[key]
        for key, title in ORGAN_SECTIONS
        if clean.get(key)
    ]
    if findings:
        sections.append((FINDINGS, "\n".join(findings)))
    sections += [(key, clean[key]) for key, _ in TAIL_SECTIONS if clean.get(key)]
    return sections


def latest_version(session: Session, study_id: int) -> ReportVersion | None:
    return session.scalar(
        select(ReportVersion)
        .join(Report, Report.id == ReportVersion.report_id)
        .where(Report.study_id == study_id)
        .order_by(ReportVersion.version_number.desc())
        .limit(1)
    )


def versions(session: Session, study_id: int) -> list[ReportVersion]:
    return list(
        session.scalars(
            select(ReportVersion)
            .join(Report, Report.id == ReportVersion.report_id)
            .where(Report.study_id == study_id)
            .order_by(ReportVersion.version_number)
        )
    )


def is_signed_final(session: Session, study_id: int) -> bool:
    return any(v.kind is ReportKind.FINAL for v in versions(session, study_id))


def save_working_copy(
    session: Session,
    *,
    study: Study,
    author: User,
    texts: Mapping[str, str],
    now: datetime,
    client_address: str | None = None,
) -> ReportVersion:
    """Store the editor's text as an unsigned human draft version (claim checked by caller)."""
    if is_signed_final(session, study.id):
        raise EditError("the report is final; write an addendum instead")
    sections = to_signed_sections(texts)
    if not sections:
        raise EditError("the report has no text")
    report = session.scalar(select(Report).where(Report.study_id == study.id))
    if report is None:
        report = Report(study_id=study.id)
        session.add(report)
        session.flush()
    previous = latest_version(session, study.id)
    version = ReportVersion(
        report_id=report.id,
        version_number=(previous.version_number + 1) if previous else 1,
        kind=ReportKind.DRAFT,
        ai_generated=False,
        author_id=author.id,
        created_at=now,
        model_version=previous.model_version if previous else None,
        structured={"sections": [list(pair) for pair in sections]},
        rendered_text=render(sections),
    )
    session.add(version)
    session.flush()
    audit.record(
        session,
        actor=author.username,
        action="report.edit",
        object_type="report_version",
        object_id=version.id,
        user_id=author.id,
        study_id=study.id,
        client_address=client_address,
        detail={"version_number": version.version_number},
    )
    return version


DICTATION_KEYS = {"indication": "clinical_history", "clinical_history": "clinical_history"}


def place_dictation(sections: Mapping[str, str]) -> dict[str, str]:
    """A transcript's sections mapped onto the editor's boxes (findings split by organ)."""
    placed: dict[str, list[str]] = {}
    for name, body in sections.items():
        text = str(body).strip()
        if not text:
            continue
        if name == FINDINGS:
            organs, rest = place_dictated_findings(text)
            for key, part in organs.items():
                placed.setdefault(key if key in _ORGAN_KEYS else OTHER_FINDINGS, []).append(part)
            if rest:
                placed.setdefault(OTHER_FINDINGS, []).append(rest)
            continue
        key = DICTATION_KEYS.get(name, name)
        placed.setdefault(key if key in _TITLE_OF else OTHER_FINDINGS, []).append(text)
    return {key: " ".join(parts) for key, parts in placed.items()}
