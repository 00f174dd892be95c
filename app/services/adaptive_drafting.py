"""Load-adaptive precision on a GPU worker: the drafter of the form the controller chose.

Off by default (``RADSCRIBE_LOAD_ADAPTIVE_PRECISION``).  When on, the first call of
:meth:`AdaptiveDrafting.drafter` (a worker's warm-up) loads both forms, checks the lighter
one against the evaluation record (``app.core.precision_control.check_light_form``) and
starts a sampler thread that reads the GPU's utilisation every
``load_adaptive_sample_seconds`` and feeds the controller.  Every later call returns the
drafter of the current form, so each drafting job runs, and records in its draft, the
precision (and model version) of the form chosen when it started.

With the feature off, a model on a GPU is still watched: the sampler only sets
``radscribe_gpu_utilisation_percent``.  Where no GPU reading works the feature reports itself
unavailable (a warning in the log, ``radscribe_load_adaptive_available`` 0) and drafting stays
in the full form.  Switches and refusals are logged and counted; a gauge shows the current form.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from app.core.precision_control import (
    Decision,
    FormCheck,
    FormId,
    Hysteresis,
    ModelForm,
    PrecisionController,
    Refused,
    check_light_form,
)
from app.core.settings import Settings
from app.services.gpu_utilisation import Unavailable, UtilisationSource, open_gpu_source
from app.services.model_loading import get_drafter, get_light_drafter
from models.inference import Drafter

log = logging.getLogger(__name__)

FORM_SWITCHES = Counter(
    "radscribe_model_form_switches_total",
    "Load-adaptive precision: form changes (outcome=switched) and changes to the lighter form "
    "refused because it has not passed the evaluation (outcome=refused), by target form.",
    ["to", "outcome"],
)
FORM_ACTIVE = Gauge(
    "radscribe_model_form_active",
    "Worker processes drafting in each model form (full, light).",
    ["form"],
    multiprocess_mode="livesum",
)
GPU_UTILISATION = Gauge(
    "radscribe_gpu_utilisation_percent",
    "Utilisation of the drafting GPU, as load-adaptive precision last read it.",
    multiprocess_mode="livemax",
)
LOAD_ADAPTIVE_AVAILABLE = Gauge(
    "radscribe_load_adaptive_available",
    "1 where load-adaptive precision is on and reads its GPU, 0 where it is on but unavailable.",
    multiprocess_mode="livemin",
)

STOP_TIMEOUT_SECONDS = 5.0


def form_id(drafter: Drafter) -> FormId:
    return FormId(drafter.meta.model_version, drafter.meta.weights_sha256, drafter.precision)


def validate_light_form(settings: Settings, full: Drafter, light: Drafter) -> FormCheck:
    """Check the lighter form against the evaluation record the settings name."""
    path = settings.load_adaptive_evaluation
    if path is None:
        return FormCheck(False, "no evaluation record (RADSCRIBE_LOAD_ADAPTIVE_EVALUATION)")
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return FormCheck(False, f"cannot read the evaluation record {path}: {exc}")
    if not isinstance(record, dict):
        return FormCheck(False, f"the evaluation record {path} is not a JSON object")
    return check_light_form(
        record, form_id(full), form_id(light), tolerance=settings.load_adaptive_auroc_tolerance
    )


@dataclass
class _Forms:
    full: Drafter
    light: Drafter | None
    check: FormCheck


class AdaptiveDrafting:
    """Chooses the drafter per job from the GPU's load (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        source: UtilisationSource | None = None,
        switching: bool = True,
        run_sampler: bool = True,
        load_full: Callable[[Settings], Drafter] = get_drafter,
        load_light: Callable[[Settings], Drafter] = get_light_drafter,
    ) -> None:
        """``source`` None: the GPU of ``settings.model_device``.  Without ``switching`` the
        GPU is only watched (its utilisation gauge), and the full form always drafts.  Without
        ``run_sampler`` the owner calls :meth:`sample` itself (a replayed trace, one reading
        per call)."""
        self.settings = settings
        self.switching = switching
        self.hysteresis = Hysteresis(
            settings.load_adaptive_up_percent,
            settings.load_adaptive_down_percent,
            settings.load_adaptive_hold_seconds,
        )
        self._source = source
        self._run_sampler = run_sampler
        self._load_full = load_full
        self._load_light = load_light
        self._lock = threading.Lock()
        self._forms: _Forms | None = None
        self.controller: PrecisionController | None = None
        self.unavailable: str | None = None
        self._sampler: threading.Thread | None = None
        self._sampler_pid: int | None = None
        self._stop = threading.Event()

    # -- what drafting calls ------------------------------------------------------------------
    def drafter(self) -> Drafter:
        """The drafter of the current form (the first call loads the forms)."""
        forms = self._ready()
        self._ensure_sampler()
        if self.controller is not None and self.controller.form is ModelForm.LIGHT:
            assert forms.light is not None  # the controller only goes light when it is loaded
            return forms.light
        return forms.full

    @property
    def form(self) -> ModelForm:
        return self.controller.form if self.controller is not None else ModelForm.FULL

    def sample(self) -> Decision | None:
        """Read the GPU once and let the controller decide; act on what it decides."""
        if self._source is None:
            return None
        reading = self._source.read()
        if reading.percent is not None:
            GPU_UTILISATION.set(reading.percent)
        if self.controller is None:  # watching only: load-adaptive precision is off
            return None
        with self._lock:
            decision = self.controller.observe(reading.at, reading.percent)
        if decision is not None:
            self._record(decision)
        return decision

    # -- set-up ---------------------------------------------------------------------------------
    def _ready(self) -> _Forms:
        with self._lock:
            if self._forms is None:
                self._forms = self._load()
            return self._forms

    def _load(self) -> _Forms:
        full = self._load_full(self.settings)
        if self._source is None:
            opened = open_gpu_source(self.settings.model_device)
            if isinstance(opened, Unavailable) and not self.switching:
                log.info("GPU utilisation is not reported: %s", opened.reason)
                return _Forms(full, None, FormCheck(False, "load-adaptive precision is off"))
            if isinstance(opened, Unavailable):
                self.unavailable = opened.reason
                LOAD_ADAPTIVE_AVAILABLE.set(0)
                log.warning(
                    "load-adaptive precision is unavailable (%s); drafting stays in the full "
                    "form, %s",
                    opened.reason,
                    form_id(full).describe(),
                )
                self._show_form(ModelForm.FULL)
                return _Forms(full, None, FormCheck(False, opened.reason))
            self._source = opened
        if not self.switching:
            return _Forms(full, None, FormCheck(False, "load-adaptive precision is off"))
        light = self._load_light(self.settings)
        check = validate_light_form(self.settings, full, light)
        if check.passed:
            log.info("load-adaptive precision: lighter form validated: %s", check.reason)
        else:
            log.warning(
                "load-adaptive precision: switches to the lighter form %s will be refused: %s",
                form_id(light).describe(),
                check.reason,
            )
        self.controller = PrecisionController(
            self.hysteresis, light_allowed=check.passed, refusal_reason=check.reason
        )
        LOAD_ADAPTIVE_AVAILABLE.set(1)
        self._show_form(ModelForm.FULL)
        log.info(
            "load-adaptive precision on (%s): full %s, lighter %s; above %.0f%% for %.0f s -> "
            "lighter, below %.0f%% for %.0f s -> full",
            self._source.describe(),
            form_id(full).describe(),
            form_id(light).describe(),
            self.hysteresis.up_percent,
            self.hysteresis.hold_seconds,
            self.hysteresis.down_percent,
            self.hysteresis.hold_seconds,
        )
        return _Forms(full, light if check.passed else None, check)

    def _record(self, decision: Decision) -> None:
        forms = self._forms
        assert forms is not None
        if isinstance(decision, Refused):
            FORM_SWITCHES.labels(to=ModelForm.LIGHT.value, outcome="refused").inc()
            log.warning(
                "GPU at %.0f%% for %.0f s, but the lighter form is refused: %s",
                decision.percent,
                decision.held_seconds,
                decision.reason,
            )
            return
        FORM_SWITCHES.labels(to=decision.to_form.value, outcome="switched").inc()
        self._show_form(decision.to_form)
        target = forms.light if decision.to_form is ModelForm.LIGHT else forms.full
        assert target is not None
        log.warning(
            "load-adaptive precision: GPU at %.0f%% for %.0f s: drafting switches from the %s "
            "to the %s form, %s",
            decision.percent,
            decision.held_seconds,
            decision.from_form.value,
            decision.to_form.value,
            form_id(target).describe(),
        )

    @staticmethod
    def _show_form(form: ModelForm) -> None:
        for each in ModelForm:
            FORM_ACTIVE.labels(form=each.value).set(1 if each is form else 0)

    # -- the sampler thread ---------------------------------------------------------------------
    def _ensure_sampler(self) -> None:
        """Start the sampler in this process (again after a fork: threads do not survive it)."""
        if not self._run_sampler or self._source is None:
            return
        with self._lock:
            if self._sampler_pid == os.getpid() and self._sampler is not None:
                return
            self._stop = threading.Event()
            self._sampler = threading.Thread(
                target=self._sample_forever, name="gpu-utilisation", daemon=True
            )
            self._sampler_pid = os.getpid()
            self._sampler.start()

    def _sample_forever(self) -> None:
        while not self._stop.wait(self.settings.load_adaptive_sample_seconds):
            try:
                self.sample()
            except Exception:  # a reading must never end the sampler
                log.exception("reading the GPU utilisation failed")

    def stop(self) -> None:
        self._stop.set()
        if self._sampler is not None and self._sampler_pid == os.getpid():
            self._sampler.join(timeout=STOP_TIMEOUT_SECONDS)
        self._sampler = None


def drafter_for(settings: Settings) -> Callable[[], Drafter]:
    """The drafter a drafting job asks for: load-adaptive where enabled, else the full form.

    A model on a GPU is watched either way, so its utilisation reaches the metrics."""
    watch_gpu = settings.model_device.startswith("cuda")
    if not settings.load_adaptive_precision and not watch_gpu:
        return lambda: get_drafter(settings)
    return AdaptiveDrafting(settings, switching=settings.load_adaptive_precision).drafter
