// Popup of the HiPKI component simulator. Same protocol as the real component's /popupForm:
// ask the opener for the request with {"func":"getTbs"}, run it against this origin's own
// endpoints, post the answer back to the opener's origin.
//
// Unlike the real component, the popup stays open for further requests (the login page sends
// MakeSignature and then GetUserCert) and closes itself after IDLE_CLOSE_MS without one.
"use strict";

(function () {
  const FIRST_REQUEST_MS = 30000; // the opener may still be fetching its challenge
  const IDLE_CLOSE_MS = 5000; // long enough for the opener's second request
  const status = document.getElementById("sim-status");
  let closeTimer = null;

  function scheduleClose(delay = IDLE_CLOSE_MS) {
    clearTimeout(closeTimer);
    closeTimer = setTimeout(() => window.close(), delay);
  }

  async function run(request) {
    if (request.func === "MakeSignature") {
      status.textContent = "簽章中…";
      const response = await fetch("/sign", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(request),
      });
      return response.json();
    }
    if (request.func === "GetUserCert" || request.func === "pkcs11info") {
      status.textContent = "讀取憑證中…";
      const response = await fetch("/pkcs11info?withcert=true");
      return response.json();
    }
    return { func: request.func, ret_code: 0x76000002, last_error: 0x76000002, message: "不支援的功能" };
  }

  window.addEventListener("message", async (event) => {
    if (!window.opener || event.source !== window.opener) {
      return;
    }
    let request;
    try {
      request = typeof event.data === "string" ? JSON.parse(event.data) : event.data;
    } catch {
      return;
    }
    if (!request || typeof request.func !== "string") {
      return;
    }
    clearTimeout(closeTimer);
    let answer;
    try {
      answer = await run(request);
    } catch (error) {
      answer = { func: request.func, ret_code: 0x76000002, last_error: 0x76000002, message: String(error) };
    }
    status.textContent = answer.ret_code === 0 ? "完成。" : "失敗：" + (answer.message || answer.ret_code);
    event.source.postMessage(JSON.stringify(answer), event.origin);
    scheduleClose();
  });

  if (window.opener) {
    window.opener.postMessage(JSON.stringify({ func: "getTbs" }), "*");
    scheduleClose(FIRST_REQUEST_MS);
  } else {
    status.textContent = "此視窗需由登入網頁開啟。";
  }
})();
