"""Studies whose model stage starts together run through the network as one batch.

A GPU drafts a batch of studies in little more time than one, so a worker process that
runs several drafting jobs at once (threads) hands their model calls to one
``ModelBatcher``: the first call waits up to ``window_s`` for others, then one
``Drafter.draft_batch`` runs them all and each caller gets its own results back.
Calls are only merged when they use the same drafter (load-adaptive precision may
switch forms between jobs) and that drafter is batch-invariant (not INT8, whose
activation scales depend on the whole batch).  A failure of the batch is raised in
every caller.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from models.inference import Drafter, DraftResult, StudyInput

RECENT_BATCHES = 64


@dataclass
class _Request:
    drafter: Drafter
    studies: Sequence[StudyInput]
    done: threading.Event = field(default_factory=threading.Event)
    results: list[DraftResult] | None = None
    error: BaseException | None = None


class ModelBatcher:
    """Gathers concurrent ``draft_batch`` calls into one network call."""

    def __init__(self, *, max_studies: int, window_s: float) -> None:
        if max_studies < 1:
            raise ValueError("max_studies must be at least 1")
        self.max_studies = max_studies
        self.window_s = window_s
        self._lock = threading.Condition()
        self._pending: list[_Request] = []
        self._leader_busy = False
        self.batch_sizes: deque[int] = deque(maxlen=RECENT_BATCHES)
        """Studies in each of the latest network calls."""

    def run(self, drafter: Drafter, studies: Sequence[StudyInput]) -> list[DraftResult]:
        if not drafter.batch_invariant:  # it would run them one by one: nothing to wait for
            return drafter.draft_batch(studies)
        request = _Request(drafter, studies)
        with self._lock:
            self._pending.append(request)
            self._lock.notify_all()
            lead = not self._leader_busy
            if lead:
                self._leader_busy = True
        if lead:
            self._lead()
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.results is not None
        return request.results

    def _pending_studies(self, drafter: Drafter) -> int:
        return sum(len(r.studies) for r in self._pending if r.drafter is drafter)

    def _lead(self) -> None:
        """Collect for the window (or until full), run, hand the leadership on."""
        with self._lock:
            drafter = self._pending[0].drafter
            deadline = time.monotonic() + self.window_s
            while self._pending_studies(drafter) < self.max_studies:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            batch: list[_Request] = []
            count = 0
            for request in list(self._pending):
                if request.drafter is not drafter:
                    continue
                if batch and count + len(request.studies) > self.max_studies:
                    break
                batch.append(request)
                count += len(request.studies)
                self._pending.remove(request)
        try:
            results = drafter.draft_batch([s for r in batch for s in r.studies])
            self.batch_sizes.append(count)
            start = 0
            for request in batch:
                request.results = results[start : start + len(request.studies)]
                start += len(request.studies)
        except BaseException as exc:  # every caller sees the batch's failure
            for request in batch:
                request.error = exc
        finally:
            for request in batch:
                request.done.set()
            with self._lock:
                self._leader_busy = False
                if self._pending:
                    self._leader_busy = True
                    threading.Thread(target=self._lead, name="model-batch", daemon=True).start()
