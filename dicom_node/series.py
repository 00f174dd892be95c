"""Series ready detection and the series-ready event.

A series is ready once the association that sent it has ended and no new
instance has arrived for the quiet window.  The state lives in the index (a
database), so several receiver processes can share it: :class:`ReadyScanner`
asks the index to *claim* ready series, which succeeds for exactly one caller
per series content version; a late or corrected instance raises the version,
so the series fires again.  After a claim, the study's ready series are
ranked (:mod:`dicom_node.selection`) and the event is delivered.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dicom_node.header import RejectedInstance, read_header_file
from dicom_node.index import InstanceIndex, ReadySeries, SeriesDecision, SeriesFile
from dicom_node.metrics import ReadyMetrics
from dicom_node.selection import (
    Assessment,
    SelectionRules,
    SeriesSummary,
    SliceSummary,
    rank_series,
)
from dicom_node.storage import InstanceStore

log = logging.getLogger(__name__)

DEFAULT_QUIET_SECONDS = 2.0
DEFAULT_STALE_SECONDS = 300.0
DEFAULT_SCAN_INTERVAL = 0.25
SUMMARY_CACHE_SIZE = 256


def slice_order_key(item: SeriesFile) -> tuple[int, float, int, str]:
    """Order by position along the slice normal; instance number only as a fallback."""
    position = item.slice_position
    return (
        0 if position is not None else 1,
        position if position is not None else 0.0,
        item.instance_number if item.instance_number is not None else 0,
        item.sop_instance_uid,
    )


def order_slices(files: Sequence[SeriesFile]) -> list[SeriesFile]:
    return sorted(files, key=slice_order_key)


@dataclass(frozen=True)
class SeriesReadyEvent:
    """One series content version became ready (delivered once)."""

    study_instance_uid: str
    series_instance_uid: str
    content_version: int
    modality: str
    selected: bool
    # The series chosen for drafting in this study (may be another one), if any.
    study_selected_series_uid: str | None
    skip_reason: str | None = None
    flags: tuple[str, ...] = ()


def summarize_series(ready: ReadySeries, slices: Sequence[SliceSummary]) -> SeriesSummary:
    """The series as its slices (in slice order) state it; series attributes are the
    first slice's."""
    first = slices[0] if slices else None
    return SeriesSummary(
        series_instance_uid=ready.series_instance_uid,
        content_version=ready.content_version,
        modality=(first.modality if first else ready.modality) or ready.modality,
        series_number=first.series_number if first else None,
        description=first.series_description if first else "",
        kernel=first.kernel if first else "",
        slices=tuple(slices),
    )


def decisions_from(ranked: Sequence[Assessment]) -> list[SeriesDecision]:
    """The best eligible series is selected; every other one says why it is skipped."""
    best = next((a for a in ranked if a.eligible), None)
    decisions = []
    for item in ranked:
        selected = best is not None and item.series_instance_uid == best.series_instance_uid
        if selected:
            reason = None
        elif not item.eligible:
            reason = "; ".join(item.reasons)
        else:
            reason = f"ranked below series {best.series_instance_uid if best else ''}"
        decisions.append(
            SeriesDecision(
                series_instance_uid=item.series_instance_uid,
                content_version=item.content_version,
                selected=selected,
                score=item.score,
                skip_reason=reason,
                notes={"flags": list(item.flags), **item.details},
            )
        )
    return decisions


@dataclass(kw_only=True)
class ReadyScanner:
    """Claims ready series, ranks their study's series and delivers events."""

    index: InstanceIndex
    store: InstanceStore
    quiet_seconds: float = DEFAULT_QUIET_SECONDS
    stale_seconds: float = DEFAULT_STALE_SECONDS
    rules: SelectionRules = field(default_factory=SelectionRules)
    on_ready: Callable[[SeriesReadyEvent], None] | None = None
    metrics: ReadyMetrics = field(default_factory=ReadyMetrics)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    _summaries: OrderedDict[tuple[str, int], SeriesSummary] = field(
        default_factory=OrderedDict, init=False
    )

    def scan_once(self) -> list[SeriesReadyEvent]:
        """Claim what is ready now and deliver one event per claimed series."""
        now = self.clock()
        claimed = self.index.claim_ready_series(
            quiet_before=now - timedelta(seconds=self.quiet_seconds),
            stale_before=now - timedelta(seconds=max(self.stale_seconds, self.quiet_seconds)),
        )
        if not claimed:
            return []
        decisions: dict[str, SeriesDecision] = {}
        selected_by_study: dict[str, str | None] = {}
        for study_uid in dict.fromkeys(item.study_instance_uid for item in claimed):
            try:
                study_decisions = self.select_study(study_uid)
                self.index.record_selection(study_uid, study_decisions)
            except Exception:  # the claim stands; the events say nothing was selected
                log.exception("series selection failed for study %s", study_uid)
                continue
            selected_by_study[study_uid] = next(
                (d.series_instance_uid for d in study_decisions if d.selected), None
            )
            decisions.update((d.series_instance_uid, d) for d in study_decisions)
        events = []
        for item in claimed:
            decision = decisions.get(item.series_instance_uid)
            event = SeriesReadyEvent(
                study_instance_uid=item.study_instance_uid,
                series_instance_uid=item.series_instance_uid,
                content_version=item.content_version,
                modality=item.modality,
                selected=bool(decision and decision.selected),
                study_selected_series_uid=selected_by_study.get(item.study_instance_uid),
                skip_reason=decision.skip_reason if decision else "selection failed",
                flags=tuple(decision.notes.get("flags", ())) if decision else (),
            )
            events.append(event)
            self.metrics.series_ready.inc()
            if event.selected:
                self.metrics.series_selected.inc()
            log.info(
                "series %s of study %s ready (version %d): %s",
                item.series_instance_uid,
                item.study_instance_uid,
                item.content_version,
                "selected for drafting" if event.selected else f"skipped: {event.skip_reason}",
            )
            if self.on_ready is not None:
                try:
                    self.on_ready(event)
                except Exception:
                    log.exception("series-ready callback failed for %s", item.series_instance_uid)
        return events

    def select_study(self, study_instance_uid: str) -> list[SeriesDecision]:
        ready = self.index.ready_series_of_study(study_instance_uid)
        summaries = [self._summary(item) for item in ready]
        return decisions_from(rank_series(summaries, self.rules))

    def _summary(self, ready: ReadySeries) -> SeriesSummary:
        key = (ready.series_instance_uid, ready.content_version)
        cached = self._summaries.get(key)
        if cached is not None:
            self._summaries.move_to_end(key)
            return cached
        slices: list[SliceSummary] = []
        for item in order_slices(self.index.series_files(ready.series_instance_uid)):
            if item.selection is not None:
                slices.append(item.selection)
                continue
            # Indexed before the index kept what selection needs: read the header.
            try:
                header = read_header_file(self.store.absolute(item.storage_path))
            except (RejectedInstance, OSError, ValueError) as exc:
                log.warning(
                    "instance %s of series %s unreadable for selection: %s",
                    item.sop_instance_uid,
                    ready.series_instance_uid,
                    type(exc).__name__,
                )
                continue
            slices.append(SliceSummary.from_header(header))
        summary = summarize_series(ready, slices)
        self._summaries[key] = summary
        while len(self._summaries) > SUMMARY_CACHE_SIZE:
            self._summaries.popitem(last=False)
        return summary

    def run(self, stop: threading.Event, interval: float = DEFAULT_SCAN_INTERVAL) -> None:
        """Scan until ``stop`` is set; errors are logged and the loop goes on."""
        while not stop.is_set():
            try:
                self.scan_once()
            except Exception:
                log.exception("ready scan failed")
            stop.wait(interval)
