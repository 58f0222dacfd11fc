// The door: choose the event, scan ticket codes with the camera or type them (the QR text or
// the ticket's short door code), and show a big green or red answer from POST /api/v1/checkins.
//
// Scanning uses the browser's BarcodeDetector where it reads QR codes, else jsQR (vendored)
// on frames drawn into a canvas. A code whose answer is on screen is not sent again while
// it stays in front of the camera; "Next ticket" clears the answer (and that memory).
//
// The count is the event's, every door's scans together: GET .../checkins/summary after each
// answer and every few seconds (the API counts a check-in in the same write that records it).

(() => {
  "use strict";

  const { startStaffPage, readTicketCode, TicketKeys, TicketCodeRefused, problemText, vietnamTime, t, locale } =
    window.EventHunting;

  const SCAN_INTERVAL_MS = 150;
  const FRAME_WIDTH = 640;
  const KEYS_MAX_AGE_MS = 5 * 60 * 1000; // as long as the API lets them be cached
  const COUNT_REFRESH_MS = 5000;
  const GATE_KEY = "eventhunting.gate";
  const QR_PREFIX = "EH1:";

  const REASONS = ["malformed", "unknown_key", "bad_signature", "other_event", "refunded", "cancelled", "not_found"];
  const count = new Intl.NumberFormat(locale);

  const element = (id) => document.getElementById(id);
  const page = {
    door: element("door"),
    eventForm: element("event-form"),
    eventChoice: element("event-choice"),
    eventId: element("event-id"),
    eventProblem: element("event-problem"),
    eventPicker: element("event-picker"),
    gate: element("gate"),
    scanning: element("scanning"),
    eventTitle: element("event-title"),
    result: element("result"),
    resultTitle: element("result-title"),
    resultReason: element("result-reason"),
    count: element("checkin-count"),
    countLabel: element("count-label"),
    countStatus: element("count-status"),
    next: element("next-ticket"),
    video: element("camera"),
    canvas: element("frame"),
    cameraStart: element("camera-start"),
    cameraStop: element("camera-stop"),
    cameraStatus: element("camera-status"),
    codeForm: element("code-form"),
    code: element("code"),
  };

  const state = {
    session: null,
    event: null, // {id, title}
    keys: null,
    keysFetchedAt: 0,
    shownCode: null, // the code whose answer is on screen
    checking: false,
    stream: null,
    detector: null,
    timer: null,
    countTimer: null,
    countAsked: 0, // answers to older count requests than the last one shown are dropped
    countShown: 0,
  };

  // --- the event ------------------------------------------------------------------------

  async function fillEventChoices(account) {
    page.eventChoice.length = 1;
    for (const eventId of account.staff_events || []) {
      const option = new Option(eventId, eventId);
      page.eventChoice.add(option);
      state.session.request("GET", `/api/v1/events/${encodeURIComponent(eventId)}`).then((answer) => {
        if (answer.status === 200) {
          option.textContent = answer.body.title;
        }
      });
    }
    const wanted = new URLSearchParams(window.location.search).get("event");
    if (wanted) {
      await useEvent(wanted);
    } else if ((account.staff_events || []).length === 1) {
      await useEvent(account.staff_events[0]);
    }
  }

  async function useEvent(eventId) {
    eventId = eventId.trim().toUpperCase();
    page.eventProblem.textContent = "";
    if (!eventId) {
      page.eventProblem.textContent = t("choose_event");
      return;
    }
    const answer = await state.session.request("GET", `/api/v1/events/${encodeURIComponent(eventId)}`);
    if (answer.status !== 200) {
      page.eventProblem.textContent = answer.status === 404 ? t("no_such_event") : problemText(answer);
      return;
    }
    state.event = { id: answer.body.id, title: answer.body.title };
    page.eventId.value = state.event.id;
    page.eventChoice.value = [...page.eventChoice.options].some((o) => o.value === state.event.id)
      ? state.event.id
      : "";
    page.eventTitle.textContent = state.event.title;
    page.eventTitle.dataset.eventId = state.event.id;
    page.scanning.hidden = false;
    page.eventPicker.open = false;
    showCount(null);
    refreshCount();
    showIdle();
  }

  // --- the answer on screen ---------------------------------------------------------------

  function show(outcome, title, reason, code) {
    page.result.dataset.outcome = outcome;
    page.result.dataset.reason = code || "";
    page.resultTitle.textContent = title;
    page.resultReason.textContent = reason;
    if (outcome === "accepted" || outcome === "rejected") {
      navigator.vibrate?.(outcome === "accepted" ? 120 : [80, 60, 80, 60, 80]);
    }
  }

  function showIdle() {
    state.shownCode = null;
    show("idle", t("ready"), t("scan_or_type"));
  }

  // --- the event's count ------------------------------------------------------------------

  function showCount(summary) {
    page.count.textContent = summary ? count.format(summary.checked_in) : "–";
    page.count.dataset.count = summary ? String(summary.checked_in) : "";
    page.count.dataset.tickets = summary ? String(summary.tickets) : "";
    page.countLabel.textContent = summary ? t("count_of", { tickets: count.format(summary.tickets) }) : "";
  }

  async function refreshCount() {
    clearTimeout(state.countTimer);
    const event = state.event;
    if (!event || document.hidden) {
      return;
    }
    const asked = ++state.countAsked;
    let answer = null;
    try {
      answer = await state.session.request("GET", `/api/v1/events/${encodeURIComponent(event.id)}/checkins/summary`);
    } catch {
      answer = null;
    }
    if (state.event !== event || asked < state.countShown) {
      return; // another event was chosen, or a later answer is on screen already
    }
    state.countShown = asked;
    if (answer?.status === 200) {
      showCount(answer.body);
      page.countStatus.dataset.state = "live";
      page.countStatus.textContent = t("count_updated", { time: vietnamTime(answer.body.as_of) });
    } else {
      page.countStatus.dataset.state = "stale";
      page.countStatus.textContent = answer ? problemText(answer) : t("count_stale");
    }
    if (state.event === event && asked === state.countAsked) {
      state.countTimer = setTimeout(refreshCount, COUNT_REFRESH_MS);
    }
  }

  // --- checking a code --------------------------------------------------------------------

  async function ticketKeys() {
    if (!state.keys || Date.now() - state.keysFetchedAt > KEYS_MAX_AGE_MS) {
      try {
        state.keys = await TicketKeys.fetch();
        state.keysFetchedAt = Date.now();
      } catch {
        // Offline or the API is down: the POST below will say so.
      }
    }
    return state.keys;
  }

  // What the page can refuse itself, before asking the API; null when it cannot tell.
  async function refusedHere(scanned) {
    try {
      const code = readTicketCode(scanned);
      const keys = await ticketKeys();
      if (keys && keys.size > 0) {
        await keys.verify(code);
      }
      if (code.eventId !== state.event.id) {
        throw new TicketCodeRefused("other_event", t("other_event_id", { event_id: code.eventId }));
      }
      return null;
    } catch (error) {
      if (error instanceof TicketCodeRefused) {
        return error;
      }
      throw error;
    }
  }

  // The body of POST /api/v1/checkins: a QR text (scanned, or pasted), else a typed door
  // code; always with the door's event (the API refuses other events' tickets too) and gate.
  function checkinBody(scanned, typed) {
    const text = scanned.trim();
    const body = text.toUpperCase().startsWith(QR_PREFIX) || !typed ? { qr: text } : { code: text };
    body.event_id = state.event.id;
    const gate = page.gate.value.trim();
    if (gate) {
      body.gate = gate;
    }
    return body;
  }

  async function check(scanned, { typed = false } = {}) {
    if (!state.event || state.checking) {
      return;
    }
    state.checking = true;
    state.shownCode = scanned;
    show("checking", t("checking"), "");
    try {
      const body = checkinBody(scanned, typed);
      const refusal = body.qr === undefined ? null : await refusedHere(scanned);
      if (refusal) {
        show("rejected", t("not_valid"), refusal.message, refusal.reason);
        return;
      }
      const answer = await state.session.request("POST", "/api/v1/checkins", body);
      showAnswer(answer);
      if (answer.status === 200 || answer.status === 409) {
        refreshCount();
      }
    } catch {
      show("error", t("no_answer"), t("unreachable"), "unreachable");
      state.shownCode = null;
    } finally {
      state.checking = false;
    }
  }

  function showAnswer(answer) {
    const body = answer.body || {};
    if (answer.status === 200 || answer.status === 201) {
      show("accepted", t("welcome"), t("checked_in_at", { time: vietnamTime(body.checked_in_at) }), "checked_in");
    } else if (body.code === "already_checked_in") {
      const time = body.checked_in_at ? vietnamTime(body.checked_in_at, true) : t("an_earlier_time");
      const reason = body.gate ? t("already_checked_in_at_gate", { time, gate: body.gate }) : t("already_checked_in_at", { time });
      show("rejected", t("already_checked_in"), reason, "already_checked_in");
    } else if (body.code === "invalid_ticket") {
      const reason = body.reason || "invalid";
      const text = REASONS.includes(reason) ? t(`reasons.${reason}`) : body.detail || reason.replaceAll("_", " ");
      show("rejected", t("not_valid"), text, reason);
    } else if (answer.status === 401) {
      show("error", t("signed_out"), t("sign_in_again"), "unauthenticated");
      state.shownCode = null;
    } else if (answer.status === 403) {
      show("rejected", t("not_allowed"), t("not_door_staff"), body.code || "forbidden");
    } else if (answer.status === 422 && body.errors?.some((error) => error.field === "code")) {
      show("rejected", t("not_valid"), t("not_a_code"), "malformed");
    } else {
      show("rejected", t("not_valid"), problemText(answer), body.code || String(answer.status));
    }
  }

  // --- the camera -------------------------------------------------------------------------

  async function qrDetector() {
    if (!("BarcodeDetector" in window)) {
      return null;
    }
    try {
      const formats = await window.BarcodeDetector.getSupportedFormats();
      return formats.includes("qr_code") ? new window.BarcodeDetector({ formats: ["qr_code"] }) : null;
    } catch {
      return null;
    }
  }

  async function startCamera() {
    if (!navigator.mediaDevices?.getUserMedia) {
      page.cameraStatus.textContent = t("no_camera_here");
      return;
    }
    page.cameraStart.disabled = true;
    try {
      state.stream = await navigator.mediaDevices.getUserMedia({
        video: { facingMode: "environment", width: { ideal: 1280 }, height: { ideal: 720 } },
        audio: false,
      });
    } catch (error) {
      page.cameraStart.disabled = false;
      page.cameraStatus.textContent = t("no_camera", { error: error.message || error.name });
      return;
    }
    page.video.srcObject = state.stream;
    page.video.hidden = false;
    await page.video.play().catch(() => undefined);
    state.detector = await qrDetector();
    const decoder = state.detector ? "BarcodeDetector" : "jsQR";
    page.cameraStatus.dataset.decoder = decoder;
    page.cameraStatus.textContent = t("camera_on", { decoder });
    page.cameraStart.hidden = true;
    page.cameraStop.hidden = false;
    page.cameraStart.disabled = false;
    scanSoon();
  }

  function stopCamera() {
    clearTimeout(state.timer);
    state.timer = null;
    for (const track of state.stream?.getTracks() || []) {
      track.stop();
    }
    state.stream = null;
    page.video.srcObject = null;
    page.video.hidden = true;
    page.cameraStart.hidden = false;
    page.cameraStop.hidden = true;
    page.cameraStatus.textContent = t("camera_off");
    page.cameraStatus.dataset.decoder = "";
  }

  function scanSoon() {
    state.timer = setTimeout(scanFrame, SCAN_INTERVAL_MS);
  }

  async function scanFrame() {
    if (!state.stream) {
      return;
    }
    try {
      const text = await readFrame();
      if (text && text !== state.shownCode && !state.checking) {
        await check(text);
      }
    } finally {
      if (state.stream) {
        scanSoon();
      }
    }
  }

  async function readFrame() {
    const video = page.video;
    if (video.readyState < video.HAVE_CURRENT_DATA || !video.videoWidth) {
      return null;
    }
    if (state.detector) {
      const found = await state.detector.detect(video).catch(() => []);
      return found.length ? found[0].rawValue : null;
    }
    const scale = Math.min(1, FRAME_WIDTH / video.videoWidth);
    const width = Math.round(video.videoWidth * scale);
    const height = Math.round(video.videoHeight * scale);
    const canvas = page.canvas;
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(video, 0, 0, width, height);
    const image = context.getImageData(0, 0, width, height);
    const found = window.jsQR(image.data, width, height, { inversionAttempts: "dontInvert" });
    return found ? found.data : null;
  }

  // --- wiring -----------------------------------------------------------------------------

  page.eventForm.addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    useEvent(page.eventId.value);
  });
  page.eventChoice.addEventListener("change", () => {
    if (page.eventChoice.value) {
      useEvent(page.eventChoice.value);
    }
  });
  page.codeForm.addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    const typed = page.code.value;
    if (typed.trim()) {
      page.code.value = "";
      check(typed, { typed: true });
    }
  });
  page.next.addEventListener("click", () => {
    showIdle();
    refreshCount();
  });
  // A hidden tab stops asking for the count; it catches up as soon as it is seen again.
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(state.countTimer);
    } else {
      refreshCount();
    }
  });
  page.gate.value = sessionStorage.getItem(GATE_KEY) || "";
  page.gate.addEventListener("change", () => sessionStorage.setItem(GATE_KEY, page.gate.value.trim()));
  page.cameraStart.addEventListener("click", startCamera);
  page.cameraStop.addEventListener("click", stopCamera);

  startStaffPage({
    refuse: (account) =>
      account.roles.includes("admin") || account.roles.includes("organizer") || (account.staff_events || []).length
        ? null
        : t("not_staff"),
    onSignedIn: (session, account) => {
      state.session = session;
      page.door.hidden = false;
      ticketKeys();
      fillEventChoices(account);
    },
    onSignedOut: () => {
      stopCamera();
      clearTimeout(state.countTimer);
      state.event = null;
      page.door.hidden = true;
      page.scanning.hidden = true;
    },
  });
})();
