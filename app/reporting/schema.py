"""The structured chest CT report: a versioned schema every draft and signed report follows.

The schema is data (pydantic), stored as JSON in ``report_versions.structured``
and rendered by the Jinja2 templates in ``templates/reports``.
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1.0"

NOT_ASSESSED = "Not assessed by the drafting model."
NO_PRIORS = "Prior studies not available to the drafting model."
AI_BANNER = "AI-GENERATED DRAFT - UNVERIFIED. Not reviewed or signed by a radiologist."
DEMO_BANNER = "Demonstration model, not for diagnosis."


class StatementSource(enum.StrEnum):
    MODEL = "model"
    DICTATION = "dictation"
    RADIOLOGIST = "radiologist"


class Evidence(BaseModel):
    """Where in the series the model saw a finding."""

    model_config = ConfigDict(frozen=True)

    slice_index: int | None = None
    position_mm: tuple[float, float, float] | None = None
    location: str | None = None


class Nodule(BaseModel):
    model_config = ConfigDict(frozen=True)

    diameter_mm: float = Field(gt=0)
    kind: str  # solid, part-solid, ground-glass
    lobe: str | None = None
    evidence: Evidence | None = None
    probability: float | None = Field(default=None, ge=0, le=1)


class FindingStatement(BaseModel):
    """One finding the drafting model reports as present, with its evidence."""

    finding: str  # a models.findings.Finding value
    text: str
    probability: float = Field(ge=0, le=1)
    evidence: Evidence | None = None
    radlex: str | None = None
    source: StatementSource = StatementSource.MODEL


class Section(BaseModel):
    key: str
    title: str
    dictated: str | None = None
    statements: list[FindingStatement] = Field(default_factory=list)
    # Findings of this organ system the model assessed and did not detect.
    not_detected: list[str] = Field(default_factory=list)
    # False when the drafting model assesses nothing in this organ system.
    assessed: bool = True
    # Free text a radiologist typed for this section (replaces nothing automatically).
    text: str | None = None


class Suggestion(BaseModel):
    """A guideline suggestion shown to the radiologist; never in the report until accepted."""

    guideline: str
    category: str | None = None
    text: str
    based_on: str


class StructuredReport(BaseModel):
    schema_version: str = SCHEMA_VERSION
    clinical_information: str
    technique: str
    comparison: str = NO_PRIORS
    sections: list[Section]
    nodules: list[Nodule] = Field(default_factory=list)
    impression: list[str] = Field(default_factory=list)
    dictated_impression: str | None = None
    recommendations: list[str] = Field(default_factory=list)
    suggestions: list[Suggestion] = Field(default_factory=list)
    ai_generated: bool = True
    verified: bool = False
    demonstration_model: bool = False
    model_version: str | None = None
    model_precision: str | None = None
    modality_weights: dict[str, float] = Field(default_factory=dict)
