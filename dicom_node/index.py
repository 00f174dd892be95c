"""The interface through which the node records what it stores.

``dicom_node`` never imports the application; the application implements
:class:`InstanceIndex` (for Radscribe, over its SQL tables) and hands it to
the node at start-up.  Every method is called from receiver threads, possibly
in several processes at once, so implementations keep their own transactions
and make concurrent calls safe (unique keys, guarded updates).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from dicom_node.header import InstanceHeader
from dicom_node.selection import SliceSummary


class RecordOutcome(enum.StrEnum):
    NEW = "new"
    IDENTICAL = "identical"  # same SOP Instance UID and same data set bytes
    REPLACED = "replaced"  # same SOP Instance UID, different bytes: a corrected instance


@dataclass(frozen=True)
class KnownInstance:
    digest: str  # see dicom_node.digest
    storage_path: str


@dataclass(frozen=True)
class StoredInstance:
    """An instance that is durably on disk and about to be indexed."""

    header: InstanceHeader
    storage_path: str
    size_bytes: int
    # Of the data set bytes as the sender sent them (after the File Meta), in the stored
    # form of dicom_node.digest.
    digest: str
    calling_ae: str
    peer_address: str = ""
    # The data set's digest by another algorithm (dicom_node.digest.same_content), to
    # compare with a row written before the node changed algorithms; None: cannot.
    digest_by: Callable[[str], str] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class RecordResult:
    outcome: RecordOutcome
    # The file the index pointed at before a replacement (to delete once committed).
    previous_path: str | None = None


@dataclass(frozen=True)
class ReadySeries:
    """A series claimed as ready: its content version fires exactly once."""

    study_instance_uid: str
    series_instance_uid: str
    content_version: int
    modality: str = ""


@dataclass(frozen=True)
class SeriesFile:
    sop_instance_uid: str
    storage_path: str
    instance_number: int | None
    slice_position: float | None
    # What selection needs of its header, kept at receipt (SliceSummary.to_record);
    # None for an instance indexed without it (selection then reads the file).
    selection: SliceSummary | None = None


@dataclass(frozen=True)
class SeriesDecision:
    """Selection result for one ready series of a study."""

    series_instance_uid: str
    content_version: int
    selected: bool
    score: float | None
    skip_reason: str | None
    notes: dict[str, Any] = field(default_factory=dict)


class InstanceIndex(Protocol):
    """What the node needs from the application's index of studies, series and instances."""

    def find_instance(self, sop_instance_uid: str) -> KnownInstance | None:
        """The indexed digest and path of an instance, if any."""
        ...

    def record_instance(self, instance: StoredInstance) -> RecordResult:
        """Commit an instance row (new, identical or replaced) and bump its series.

        A new or replaced instance puts its series back to *receiving*, raises
        its content version and its last-instance time; a replacement is audited.
        The row keeps what selection needs of the header (see ``SeriesFile``).
        Returns only once committed.
        """
        ...

    def close_series(self, series_instance_uids: Collection[str]) -> None:
        """The association that sent to these series has ended (*receiving* -> *quiet*)."""
        ...

    def claim_ready_series(
        self, *, quiet_before: datetime, stale_before: datetime
    ) -> list[ReadySeries]:
        """Claim series that are ready, each content version once across processes.

        Ready: *quiet* with no instance since ``quiet_before``, or still
        *receiving* (its association never ended, e.g. the receiver died) with
        no instance since ``stale_before``.
        """
        ...

    def series_files(self, series_instance_uid: str) -> list[SeriesFile]:
        """The instances of a series, in slice order (position along the normal)."""
        ...

    def ready_series_of_study(self, study_instance_uid: str) -> list[ReadySeries]:
        """Every series of the study whose current content has been claimed ready."""
        ...

    def record_selection(
        self, study_instance_uid: str, decisions: Sequence[SeriesDecision]
    ) -> None:
        """Store which series is drafted and why the others are skipped."""
        ...

    def unindexed_paths(self, storage_paths: Sequence[str]) -> set[str]:
        """Those of ``storage_paths`` that no instance row points at."""
        ...
