// 行動自然人憑證 (TW FidO) login: ID number form, waiting view with the verification code and
// countdown, QR fallback, and the endings. The markup lives in index.html under #panel-mobile.

// Letter codes of the first character, in the order of the national ID rules (same table as
// server/idnumber.py).
const LETTER_CODES = {
  A: 10, B: 11, C: 12, D: 13, E: 14, F: 15, G: 16, H: 17, I: 34, J: 18, K: 19, L: 20, M: 21,
  N: 22, O: 35, P: 23, Q: 24, R: 25, S: 26, T: 27, U: 28, V: 29, W: 32, X: 30, Y: 31, Z: 33,
};
// Weights of the letter's units digit and the eight digits before the check digit.
const WEIGHTS = [9, 8, 7, 6, 5, 4, 3, 2, 1];
const CITIZEN_OR_NEW_RESIDENT = /^[A-Z][1289]\d{8}$/;
const OLD_RESIDENT = /^[A-Z][A-D]\d{8}$/;

const COUNTDOWN_TICK_MS = 500; // twice a second, so the seconds never skip visibly
// After the local countdown reaches zero, poll the server once this much later, because the
// server ends the login by its own clock, which may be slightly behind the corrected local one.
const EXPIRY_CHECK_DELAY_MS = 1500;

const TEXT = {
  empty: "請輸入身分證統一編號。",
  format: "身分證統一編號格式不正確：應為 1 個英文字母加 9 位數字（例：A123456789）。",
  checksum: "身分證統一編號檢查碼不正確，請確認是否輸入錯誤。",
  submitting: "處理中…",
  submit: "登入",
  pushSent: "已發送推播通知至您的行動裝置。",
  pushNotDelivered: "推播通知未能送達您的行動裝置，請改用 QR Code 掃描登入。",
  qrImageFailed: "QR Code 無法載入，請重新登入。",
};

/** Return the ID number without spaces, in upper case, full-width characters made ASCII. */
export function normalizeIdNumber(raw) {
  return String(raw).normalize("NFKC").replace(/\s+/g, "").toUpperCase();
}

function checksumOk(idNumber) {
  const code = LETTER_CODES[idNumber[0]];
  const second = idNumber[1];
  // Old resident numbers count the second letter's units digit (A→0 … D→3) as d1.
  const d1 = /[A-Z]/.test(second) ? LETTER_CODES[second] % 10 : Number(second);
  const digits = [code % 10, d1, ...Array.from(idNumber.slice(2, 9), Number)];

  let total = Math.floor(code / 10) + Number(idNumber[9]);
  WEIGHTS.forEach((weight, i) => {
    total += weight * digits[i];
  });
  return total % 10 === 0;
}

/** Return a zh-TW error for a normalised ID number, or null when it is valid. */
export function checkIdNumber(idNumber) {
  if (!idNumber) {
    return TEXT.empty;
  }
  if (!CITIZEN_OR_NEW_RESIDENT.test(idNumber) && !OLD_RESIDENT.test(idNumber)) {
    return TEXT.format;
  }
  return checksumOk(idNumber) ? null : TEXT.checksum;
}

function formatRemaining(seconds) {
  const minutes = Math.floor(seconds / 60);
  return `${String(minutes).padStart(2, "0")}:${String(seconds % 60).padStart(2, "0")}`;
}

/** Wire up the mobile credential panel. `ctx` is the context that login.js builds. */
export function mount(panel, ctx) {
  const find = (selector) => panel.querySelector(selector);
  const form = find("#mobile-form");
  const input = find("#id-number");
  const submitButton = find("#mobile-submit");
  const formError = find("#form-error");
  const waitingTitle = find("#waiting-title");
  const pushSection = find("#push-section");
  const code = find("#verification-code");
  const qrSection = find("#qr-section");
  const qrImage = find("#qr-image");
  const qrLink = find("#qr-link");
  const countdown = find("#countdown");
  const cancelButton = find("#cancel-login");
  const retryButton = find("#retry-login");
  const views = Array.from(panel.querySelectorAll("[data-view]"));

  let login = null; // the login being watched; null on the form and after an ending
  let stopWatch = null;
  let countdownTimer = null;
  let expiryCheckTimer = null;
  let expiresAt = 0; // seconds, server clock
  let clockOffsetMs = 0; // server clock minus local clock
  let qrRequested = false;

  function showView(name) {
    for (const view of views) {
      view.hidden = view.dataset.view !== name;
    }
  }

  function currentView() {
    return views.find((view) => !view.hidden)?.dataset.view;
  }

  function setFormError(text) {
    formError.textContent = text;
    input.setAttribute("aria-invalid", text ? "true" : "false");
  }

  function setBusy(busy) {
    submitButton.disabled = busy;
    submitButton.setAttribute("aria-busy", String(busy));
    submitButton.textContent = busy ? TEXT.submitting : TEXT.submit;
  }

  // Countdown, against the server's clock so a wrong local clock does not matter.

  function syncClock(state) {
    if (Number.isFinite(state.server_time)) {
      clockOffsetMs = state.server_time * 1000 - Date.now();
    }
    if (Number.isFinite(state.expires_at)) {
      expiresAt = state.expires_at;
    }
  }

  function tick() {
    const remainingMs = expiresAt * 1000 - (Date.now() + clockOffsetMs);
    const seconds = Math.max(0, Math.ceil(remainingMs / 1000));
    countdown.textContent = formatRemaining(seconds);
    if (seconds === 0 && !expiryCheckTimer && stopWatch) {
      expiryCheckTimer = setTimeout(() => stopWatch?.refresh(), EXPIRY_CHECK_DELAY_MS);
    }
  }

  function startCountdown() {
    stopCountdown();
    tick();
    countdownTimer = setInterval(tick, COUNTDOWN_TICK_MS);
  }

  function stopCountdown() {
    clearInterval(countdownTimer);
    clearTimeout(expiryCheckTimer);
    countdownTimer = null;
    expiryCheckTimer = null;
  }

  function endWatch() {
    stopCountdown();
    if (stopWatch) {
      stopWatch();
      stopWatch = null;
    }
  }

  // Steps of the flow

  async function onSubmit(event) {
    event.preventDefault();
    if (submitButton.disabled) {
      return;
    }
    const idNumber = normalizeIdNumber(input.value);
    const problem = checkIdNumber(idNumber);
    if (problem) {
      setFormError(problem);
      input.focus();
      return;
    }

    input.value = idNumber;
    setFormError("");
    ctx.clearStatus();
    setBusy(true);
    try {
      beginWaiting(await ctx.startLogin({ id_number: idNumber }));
    } catch (error) {
      setFormError(error.message);
      input.focus();
    } finally {
      setBusy(false);
    }
  }

  function beginWaiting(started) {
    endWatch();
    login = started;
    qrRequested = false;
    syncClock(started);

    code.textContent = started.verification_code ?? "";
    pushSection.hidden = false;
    pushSection.classList.remove("verification--compact");
    qrSection.hidden = true;
    qrImage.removeAttribute("src");
    qrLink.hidden = false;
    qrLink.disabled = false;
    cancelButton.disabled = false;
    showView("waiting");
    waitingTitle.focus();

    startCountdown();
    stopWatch = ctx.watchLogin(started, onState);
    onState(started);
  }

  function onState(state) {
    if (!login || (state.login_id && state.login_id !== login.login_id)) {
      return; // a late message of a login this page has already left
    }
    syncClock(state);

    if (state.state === "pending") {
      showPending(state);
    } else if (state.state === "approved") {
      finishApproved(state);
    } else {
      finish(state);
    }
  }

  function showPending(state) {
    if (state.push_status === "not_delivered") {
      ctx.showStatus(state.push_message || state.message || TEXT.pushNotDelivered, "warning");
      if (!qrRequested) {
        openQr();
      }
    } else if (state.message) {
      ctx.showStatus(state.message, "info");
    } else if (state.push_status === "sent" && state.mode !== "qr") {
      ctx.showStatus(TEXT.pushSent, "info");
    }
  }

  function finishApproved(state) {
    endWatch();
    login = null;
    showView("none");
    if (!ctx.complete(state)) {
      showView("result");
      retryButton.focus();
    }
  }

  function finish(state) {
    endWatch();
    login = null;
    const kind = state.state === "cancelled" ? "info" : "error";
    ctx.showStatus(ctx.messageFor(state), kind);
    showView("result");
    retryButton.focus();
  }

  // A request about the login failed: end the view when the login is gone, else show why.
  function onLoginRequestError(error) {
    if (error.status === 409) {
      stopWatch?.refresh(); // the login has just ended, and its status carries the reason
    } else if (error.status === 403 || error.status === 404) {
      finish({ ...login, state: "failed", reason: error.key, message: error.message });
    } else {
      ctx.showStatus(error.message, "error");
    }
  }

  async function cancel() {
    if (!login || cancelButton.disabled) {
      return;
    }
    cancelButton.disabled = true;
    try {
      onState(await ctx.cancelLogin(login));
    } catch (error) {
      onLoginRequestError(error);
    } finally {
      cancelButton.disabled = false;
    }
  }

  async function openQr() {
    if (!login || qrRequested) {
      return;
    }
    qrRequested = true;
    qrLink.disabled = true;
    const started = login;
    try {
      const answer = await ctx.request("POST", started.qr_url || `${started.status_url}/qr`);
      if (login !== started) {
        return;
      }
      if (answer.state && answer.state !== "pending") {
        onState(answer);
        return;
      }
      showQr(answer);
    } catch (error) {
      qrRequested = false;
      qrLink.disabled = false;
      if (login === started) {
        onLoginRequestError(error);
      }
    }
  }

  function showQr(answer) {
    syncClock(answer);
    tick();
    if (!answer.qr_svg_url) {
      ctx.showStatus(TEXT.qrImageFailed, "error");
      return;
    }
    qrImage.src = answer.qr_svg_url;
    qrLink.hidden = true;
    qrSection.hidden = false;
    // After the scan the app shows the same number-matching choices, so the code stays on screen.
    if (answer.verification_code) {
      code.textContent = answer.verification_code;
    }
    pushSection.hidden = !code.textContent;
    pushSection.classList.add("verification--compact");
    // The push line no longer applies; a warning that the push was not delivered stays.
    if (answer.push_status !== "not_delivered") {
      ctx.clearStatus();
    }
  }

  function retry() {
    endWatch();
    login = null;
    ctx.clearStatus();
    showView("form");
    input.focus();
    input.select();
  }

  form.addEventListener("submit", onSubmit);
  input.addEventListener("input", () => {
    if (formError.textContent) {
      setFormError("");
    }
  });
  cancelButton.addEventListener("click", cancel);
  qrLink.addEventListener("click", openQr);
  retryButton.addEventListener("click", retry);
  qrImage.addEventListener("error", () => {
    if (login && qrImage.getAttribute("src")) {
      ctx.showStatus(TEXT.qrImageFailed, "error");
    }
  });

  return {
    activate({ initial = false } = {}) {
      // Focus the field on first load only where typing is likely (no on-screen keyboard pop-up).
      if (initial && currentView() === "form" && window.matchMedia("(pointer: fine)").matches) {
        input.focus();
      }
    },
    onEscape(event) {
      if (currentView() === "waiting") {
        event.preventDefault();
        cancel();
      }
    },
  };
}
