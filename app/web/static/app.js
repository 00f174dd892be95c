/* Radscribe pages: slice viewer, tabs, worklist paging, dictation, idle log-off. No build step. */
(function () {
  "use strict";
  const body = document.body;
  const csrf = body.dataset.csrf || "";

  /* ---- idle log-off and keep-alive ---------------------------------------------------- */
  const idleMinutes = parseFloat(body.dataset.idleMinutes || "0");
  if (idleMinutes > 0) {
    let lastActivity = Date.now();
    let lastPing = Date.now();
    const mark = () => { lastActivity = Date.now(); };
    ["keydown", "mousedown", "wheel", "touchstart", "input"].forEach((name) =>
      document.addEventListener(name, mark, { passive: true, capture: true }));
    setInterval(() => {
      const now = Date.now();
      if (now - lastActivity > idleMinutes * 60000) {
        const form = document.getElementById("logout-form");
        if (form) { form.submit(); } else { window.location.href = "/login?reason=idle"; }
        return;
      }
      // Typing in the editor makes no request: tell the server the user is still here.
      if (lastActivity > lastPing && now - lastPing > 60000) {
        lastPing = now;
        fetch("/api/me", { credentials: "same-origin" });
      }
    }, 5000);
  }

  /* ---- worklist paging ---------------------------------------------------------------- */
  const filters = document.getElementById("worklist-filters");
  if (filters) {
    const pageInput = document.getElementById("worklist-page");
    filters.addEventListener("change", (event) => {
      if (event.target !== pageInput) { pageInput.value = "1"; }
    }, true);
    document.getElementById("search").addEventListener("input", () => { pageInput.value = "1"; });
    document.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-page]");
      if (!button || button.disabled) { return; }
      pageInput.value = button.dataset.page;
      window.htmx.trigger(filters, "submit");
    });
  }

  /* ---- tabs --------------------------------------------------------------------------- */
  document.querySelectorAll(".tabs").forEach((bar) => {
    const panes = bar.parentElement.querySelectorAll(":scope > .tabpane");
    bar.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-tab]");
      if (!button) { return; }
      bar.querySelectorAll("button").forEach((b) => b.classList.toggle("active", b === button));
      panes.forEach((p) => { p.hidden = p.dataset.pane !== button.dataset.tab; });
    });
  });

  /* ---- slice viewer ------------------------------------------------------------------- */
  const viewer = document.getElementById("viewer");
  const image = document.getElementById("slice-image");
  if (viewer && image) {
    const study = viewer.dataset.study;
    const count = parseInt(viewer.dataset.count, 10);
    const slider = document.getElementById("slice-slider");
    const label = document.getElementById("slice-label");
    const windowLabel = document.getElementById("window-label");
    const canvas = document.getElementById("viewer-canvas");
    let index = 0;
    let win = viewer.dataset.window || "lung";
    const url = (i) => `/studies/${study}/slices/${i}.png?window=${win}`;
    const preload = (i) => { if (i >= 0 && i < count) { new Image().src = url(i); } };
    const show = (i) => {
      index = Math.max(0, Math.min(count - 1, i));
      image.src = url(index);
      slider.value = String(index);
      label.textContent = `${index + 1} / ${count}`;
      viewer.dataset.index = String(index);
      preload(index + 1); preload(index - 1);
    };
    window.radscribeShowSlice = show;
    slider.addEventListener("input", () => show(parseInt(slider.value, 10)));
    canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      show(index + (event.deltaY > 0 ? 1 : -1));
    }, { passive: false });
    canvas.addEventListener("keydown", (event) => {
      const step = { ArrowDown: 1, ArrowRight: 1, j: 1, ArrowUp: -1, ArrowLeft: -1, k: -1,
        PageDown: 10, PageUp: -10 }[event.key];
      if (step !== undefined) { event.preventDefault(); show(index + step); }
      else if (event.key === "Home") { event.preventDefault(); show(0); }
      else if (event.key === "End") { event.preventDefault(); show(count - 1); }
    });
    viewer.querySelectorAll(".windows button").forEach((button) => {
      button.addEventListener("click", () => {
        win = button.dataset.window;
        viewer.dataset.window = win;
        windowLabel.textContent = win;
        viewer.querySelectorAll(".windows button").forEach((b) => b.classList.toggle("active", b === button));
        show(index);
      });
    });
    document.addEventListener("click", (event) => {
      const key = event.target.closest("[data-slice]");
      const evidence = event.target.closest("a.evidence");
      if (key) { show(parseInt(key.dataset.slice, 10)); canvas.focus(); }
      else if (evidence) {
        event.preventDefault();
        show(parseInt(evidence.getAttribute("href").replace("#slice-", ""), 10));
        canvas.focus();
      }
    });
    preload(1);
  }

  /* ---- dictation: place a transcript into the editor's sections ------------------------ */
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-insert]");
    if (!button) { return; }
    const sections = JSON.parse(button.dataset.insert);
    Object.entries(sections).forEach(([key, text]) => {
      const box = document.getElementById(`section__${key}`);
      if (box && text) { box.value = box.value.trim() ? `${box.value.trim()} ${text}` : text; }
    });
    const reportTab = document.querySelector('.tabs button[data-tab="report"]');
    if (reportTab) { reportTab.click(); }
  });

  /* ---- dictation: record in the browser ------------------------------------------------ */
  const recorder = document.getElementById("recorder");
  if (recorder) {
    const start = document.getElementById("rec-start");
    const stop = document.getElementById("rec-stop");
    const dot = document.getElementById("rec-dot");
    const status = document.getElementById("rec-status");
    let media = null;
    let chunks = [];
    if (!window.MediaRecorder || !navigator.mediaDevices) {
      start.disabled = true;
      status.textContent = "Recording is not available in this browser; upload a file instead.";
    }
    start.addEventListener("click", async () => {
      try {
        const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
        media = new MediaRecorder(stream);
        chunks = [];
        media.ondataavailable = (e) => { if (e.data.size) { chunks.push(e.data); } };
        media.onstop = async () => {
          stream.getTracks().forEach((t) => t.stop());
          dot.classList.remove("on");
          status.textContent = "Uploading...";
          const type = media.mimeType || "audio/webm";
          const form = new FormData();
          form.append("audio", new Blob(chunks, { type }), "dictation.webm");
          const response = await fetch(`/api/studies/${recorder.dataset.study}/dictations`, {
            method: "POST", body: form, credentials: "same-origin", headers: { "X-CSRF-Token": csrf },
          });
          if (response.ok) { window.location.href = `/studies/${recorder.dataset.study}?done=dictation`; }
          else { status.textContent = `Upload failed: ${(await response.json()).detail || response.status}`; }
        };
        media.start();
        dot.classList.add("on");
        start.disabled = true; stop.disabled = false;
        status.textContent = "Recording...";
      } catch (error) {
        status.textContent = `Cannot record: ${error.message}`;
      }
    });
    stop.addEventListener("click", () => {
      if (media && media.state !== "inactive") { media.stop(); }
      start.disabled = false; stop.disabled = true;
    });
  }
})();
