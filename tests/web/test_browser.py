"""The radiologist's day in a real browser: Debian's Chromium driven by Playwright against
the app under uvicorn on a free port.  Screenshots go to test-artifacts/web/."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import select

from app.core.domain import DictationStatus, Priority, Role, StudyStatus
from app.core.net import free_port
from app.core.tables import Dictation
from app.services.dictation import transcribe_dictation

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
START_TIMEOUT = 15.0
VIEWPORT = {"width": 1440, "height": 900}


@pytest.fixture
def server(web: object, free_port_number: int) -> Iterator[str]:
    app = web.app  # type: ignore[attr-defined]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=free_port_number, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{free_port_number}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def free_port_number() -> int:
    return free_port()


@pytest.fixture
def browser() -> Iterator[object]:
    if not CHROMIUM.exists() and not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def log_in(page: object, base: str, username: str) -> None:
    page.goto(f"{base}/login")  # type: ignore[attr-defined]
    page.fill("#username", username)  # type: ignore[attr-defined]
    page.fill("#password", "correct horse battery")  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_url(f"{base}/worklist")  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def transcriber(tmp_path_factory: pytest.TempPathFactory) -> object:
    """The packaged tiny.en Whisper model: the worker's transcriber."""
    from app.speech.model import ModelOptions
    from app.speech.transcriber import Transcriber

    return Transcriber.load(
        spec=None,
        cache_dir=tmp_path_factory.mktemp("whisper-cache"),
        options=ModelOptions(cpu_threads=2),
    )


def test_read_a_study_from_login_to_signature(
    web: object, server: str, browser: object, dictation_wav: Path, transcriber: object
) -> None:
    seed = web.seed  # type: ignore[attr-defined]
    seed.user("rad", Role.RADIOLOGIST)
    seed.user("admin", Role.ADMIN)
    study = seed.study(
        patient_name="DOE^JANE", priority=Priority.STAT, slices=12, acquired_minutes_ago=95
    )
    seed.draft(study)
    for n, status in enumerate(
        [StudyStatus.DRAFTING, StudyStatus.QUEUED, StudyStatus.PRELIMINARY, StudyStatus.FAILED]
    ):
        seed.study(patient_name=f"ROE^RICHARD{n}", status=status, acquired_minutes_ago=20 + n * 70)

    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[attr-defined]
    page = context.new_page()
    log_in(page, server, "rad")
    rows = page.locator("#worklist-table tbody tr")
    assert rows.count() == 5
    assert "STAT" in rows.first.inner_text()  # STAT first
    shot(page, "01-worklist")

    # Search by name: the text travels in a POST body, never in the URL.
    page.fill("#search", "roe")
    page.wait_for_function("document.querySelectorAll('#worklist-table tbody tr').length === 4")
    assert "roe" not in page.url.lower()
    page.fill("#search", "")
    page.wait_for_function("document.querySelectorAll('#worklist-table tbody tr').length === 5")

    # Claim the STAT study.
    page.locator(f"tr[data-study-id='{study}'] button:has-text('Report')").click()
    page.wait_for_url(f"{server}/studies/{study}")
    assert "You are reading this study" in page.inner_text("#claimbar")
    assert "for orientation, not for primary diagnosis" in page.inner_text("#viewer")
    assert page.get_attribute("#hospital-viewer", "href").startswith("https://pacs.example.org/")

    # Scroll the slices: keyboard, wheel, slider, window, key slice.
    page.wait_for_function("document.getElementById('slice-image').naturalWidth > 0")
    page.focus("#viewer-canvas")
    for _ in range(3):
        page.keyboard.press("ArrowDown")
    assert page.inner_text("#slice-label") == "4 / 12"
    page.hover("#viewer-canvas")
    page.mouse.wheel(0, 120)
    page.wait_for_function("document.getElementById('slice-label').textContent === '5 / 12'")
    page.fill("#slice-slider", "10")
    assert page.inner_text("#slice-label") == "11 / 12"
    page.click(".windows button[data-window='bone']")
    page.wait_for_function(
        "document.getElementById('slice-image').src.includes('window=bone') && "
        "document.getElementById('slice-image').complete && "
        "document.getElementById('slice-image').naturalWidth > 0"
    )
    page.click(".keyslices button[data-slice='7']")
    assert page.inner_text("#slice-label") == "8 / 12"
    shot(page, "02-study")

    # Upload a dictation; the worker transcribes it; its sections go into the editor.
    page.click(".tabs button[data-tab='dictation']")
    page.set_input_files("#dictation-upload input[type=file]", str(dictation_wav))
    page.click("#dictation-upload button[type=submit]")
    page.wait_for_url(f"{server}/studies/{study}?done=dictation")
    page.click(".tabs button[data-tab='dictation']")
    assert "pending" in page.inner_text("[data-pane='dictation'] .dictation")
    with web.factory() as session:  # type: ignore[attr-defined]
        pending = session.scalars(select(Dictation.id)).one()
    result = transcribe_dictation(
        web.factory,  # type: ignore[attr-defined]
        dictation_id=pending,
        transcriber=transcriber,  # type: ignore[arg-type]
        data_dir=web.settings.data_dir,  # type: ignore[attr-defined]
    )
    assert result.status is DictationStatus.DONE
    page.reload()
    page.click(".tabs button[data-tab='dictation']")
    assert "pleural effusion" in page.inner_text("[data-pane='dictation'] .transcript").lower()
    shot(page, "03-dictation")
    page.click("[data-pane='dictation'] button[data-insert]")
    assert "pleural effusion" in page.input_value("#section__pleura").lower()

    # The draft tab shows probabilities and modality weights.
    page.click(".tabs button[data-tab='draft']")
    assert "0.91" in page.inner_text("[data-pane='draft']")
    assert "image" in page.inner_text("[data-pane='draft'] .weights")
    shot(page, "04-draft")
    page.click(".tabs button[data-tab='report']")

    # Signing is refused while the verify flag is open, and says why.
    page.fill("#section__impression", "Right upper lobe nodule. Small right pleural effusion.")
    page.click("#sign-final")
    page.wait_for_selector("#error")
    assert "open flag" in page.inner_text("#error")
    # ...and the text typed before the refusal is kept.
    assert "pleural effusion" in page.input_value("#section__impression")
    shot(page, "05-sign-refused")

    # Resolve the flag, edit, save, sign.
    page.locator("#flags form button[value='accepted']").first.click()
    page.wait_for_url(f"{server}/studies/{study}?done=flag")
    assert "accepted" in page.inner_text("#flags")
    page.fill("#section__recommendations", "Follow-up CT in 6 months.")
    page.click("#save-button")
    page.wait_for_url(f"{server}/studies/{study}?done=saved")
    assert page.input_value("#section__recommendations") == "Follow-up CT in 6 months."
    page.click("#sign-final")
    page.wait_for_url(f"{server}/studies/{study}?done=signed")
    assert page.inner_text("#study-status") == "final"
    page.click(".tabs button[data-tab='delivery']")
    assert "ORU^R01" in page.inner_text("#deliveries")
    page.click(".tabs button[data-tab='history']")
    shot(page, "06-signed-history")

    # The admin finds the audit entries of this study.
    page.click("#logout-form button")
    page.wait_for_url(f"{server}/login?reason=logout")
    log_in(page, server, "admin")
    page.goto(f"{server}/admin/audit?study_id={study}")
    table = page.inner_text("#audit-table")
    for action in (
        "study.claim",
        "study.view",
        "flag.accepted",
        "report.edit",
        "report.sign_final",
    ):
        assert action in table, action
    shot(page, "07-audit")
    page.goto(f"{server}/stats")
    assert page.locator("#turnaround-chart").count() == 1
    shot(page, "08-stats")
    context.close()


def test_the_api_docs_load_without_network(web: object, server: str, browser: object) -> None:
    """Swagger UI comes from the app itself: every request that leaves the app is refused
    (and recorded), and the page still renders the API."""
    web.seed.user("rad", Role.RADIOLOGIST)  # type: ignore[attr-defined]
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[attr-defined]
    elsewhere: list[str] = []

    def only_the_app(route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]
        if url.startswith(server + "/"):
            route.continue_()  # type: ignore[attr-defined]
        else:
            elsewhere.append(url)
            route.abort()  # type: ignore[attr-defined]

    context.route("**/*", only_the_app)
    page = context.new_page()
    log_in(page, server, "rad")
    page.goto(f"{server}/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "Radscribe" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector("[data-path='/api/worklist/_search']")
    assert elsewhere == []
    shot(page, "09-api-docs")
    context.close()
