// 自然人憑證 login: signs a server challenge with the MOICA card through the HiPKI local
// component, then posts the signature and certificate. The PIN goes only to the component's popup
// (postMessage); it is never sent to this site. Builds its markup inside #panel-card.
//
// HiPKI protocol: the component sends no CORS headers, so the page opens its /popupForm window
// (on the user's click, or the popup blocker stops it). The popup posts {"func":"getTbs"}, the
// page replies with the request as a JSON string, and the popup posts the result back. Only messages
// whose origin is exactly the component's origin, from that popup window, are read.
// NOTE: reading the certificate (GetUserCert) through the same popup after MakeSignature is how
// the simulator works; if the real component closes after one answer, the certificate is taken
// from the PKCS#7 signature instead, which the server accepts.

import { element } from "./dom.js";

const PIN_FAILED = 0x76100006; // card login failed: wrong PIN
const NO_TOKEN_CODES = new Set([0x76000001]); // no reader or no card (observed, unconfirmed)
// A running component's popup posts getTbs at once, so after this long it is missing.
const COMPONENT_TIMEOUT_MS = 8000;
// Signing waits for the card: a slow reader takes several seconds.
const SIGN_TIMEOUT_MS = 60000;
const CERT_TIMEOUT_MS = 5000;
const POPUP_FEATURES = "width=420,height=320";
const STYLESHEET = "/static/css/card.css";

// eCPA's help topics for the card, pointing at MOICA's site.
// NOTE: the exact pages eCPA links to are unconfirmed; these are MOICA's home and download pages.
const HELP_LINKS = [
  { id: "card-help-first", text: "首次登入與Windows使用", href: "https://moica.nat.gov.tw/" },
  { id: "card-help-driver", text: "驅動程式", href: "https://moica.nat.gov.tw/download_1.html" },
  { id: "card-help-crossplatform", text: "MAC及Linux跨平台網站元件", href: "https://moica.nat.gov.tw/download_1.html" },
];

const TEXT = {
  lead: "請將自然人憑證插入讀卡機，輸入 PIN 碼後按「登入」。",
  pinLabel: "請輸入PinCode",
  emptyPin: "請輸入自然人憑證的 PIN 碼。",
  submit: "登入",
  opening: "開啟憑證元件中…",
  signing: "請稍候，正在以自然人憑證簽章…",
  verifying: "驗證中…",
  popupBlocked: "瀏覽器封鎖了憑證元件的彈出視窗。請允許本網站開啟彈出視窗後，再按一次「登入」。",
  missingComponent: "無法連線至 HiPKI 跨平台網頁元件。請確認已安裝並啟動元件（Windows 隨 HiCOS 卡片管理工具安裝），再重新登入。",
  wrongPin: "PIN 碼錯誤，請重新輸入。連續輸入錯誤多次將鎖卡，請小心輸入。",
  noCard: "讀不到自然人憑證。請確認讀卡機已連接，且卡片已正確插入。",
  componentError: "憑證元件回應錯誤",
  closed: "憑證元件視窗已關閉，請重新登入。",
  configFailed: "無法取得自然人憑證登入設定，請重新整理頁面後再試。",
  failed: "登入失敗，請重新登入。",
};

// Errors after which the help links are pointed out.
const SHOW_HELP = new Set(["component_missing", "no_card", "component_error"]);

class ComponentError extends Error {
  constructor(key, message) {
    super(message);
    this.key = key;
  }
}

/**
 * Open the component popup; must run synchronously inside the click handler.
 * Returns { ready, request(payload, timeoutMs), close() }.
 */
export function openComponent(componentUrl) {
  const origin = new URL(componentUrl).origin;
  const popup = window.open(`${origin}/popupForm`, "hipki-component", POPUP_FEATURES);
  if (!popup) {
    throw new ComponentError("popup_blocked", TEXT.popupBlocked);
  }

  let onReady = null;
  let pending = null;
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new ComponentError("component_missing", TEXT.missingComponent)),
      COMPONENT_TIMEOUT_MS);
    onReady = () => {
      clearTimeout(timer);
      resolve();
    };
  });

  function onMessage(event) {
    if (event.origin !== origin || event.source !== popup) {
      return;
    }
    let data;
    try {
      data = typeof event.data === "string" ? JSON.parse(event.data) : event.data;
    } catch {
      return;
    }
    if (!data || typeof data !== "object") {
      return;
    }
    if (data.func === "getTbs") {
      onReady();
    } else if (pending) {
      const { resolve } = pending;
      pending = null;
      resolve(data);
    }
  }
  window.addEventListener("message", onMessage);

  // The user may close the popup; a pending request then fails at once instead of timing out.
  const closedWatch = setInterval(() => {
    if (popup.closed && pending) {
      const { reject } = pending;
      pending = null;
      reject(new ComponentError("closed", TEXT.closed));
    }
  }, 500);

  function request(payload, timeoutMs) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        pending = null;
        reject(new ComponentError("component_missing", TEXT.missingComponent));
      }, timeoutMs);
      pending = {
        resolve: (data) => {
          clearTimeout(timer);
          resolve(data);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      popup.postMessage(JSON.stringify(payload), origin);
    });
  }

  function close() {
    clearInterval(closedWatch);
    window.removeEventListener("message", onMessage);
    if (!popup.closed) {
      popup.close();
    }
  }

  return { ready, request, close };
}

function checkAnswer(answer) {
  const code = Number(answer.ret_code);
  if (code === 0 && typeof answer.signature === "string" && answer.signature) {
    return;
  }
  if (code === PIN_FAILED || Number(answer.last_error) === PIN_FAILED) {
    throw new ComponentError("wrong_pin", TEXT.wrongPin);
  }
  if (NO_TOKEN_CODES.has(code)) {
    throw new ComponentError("no_card", TEXT.noCard);
  }
  const hex = Number.isFinite(code) ? `0x${code.toString(16)}` : "?";
  throw new ComponentError("component_error", `${TEXT.componentError}（${hex}），請重新插入卡片後再試。`);
}

/** Return the base64 signing certificate from a pkcs11info result, or "". */
function signingCertificate(info) {
  for (const slot of Array.isArray(info?.slots) ? info.slots : []) {
    for (const cert of slot?.token?.certs ?? []) {
      if (cert.usage === "digitalSignature" && typeof cert.certb64 === "string") {
        return cert.certb64;
      }
    }
  }
  return "";
}

/**
 * Sign a fresh challenge with the card: MakeSignature (PKCS#7 with the card number, SHA-256),
 * then GetUserCert. `getChallenge` fetches the challenge from the server.
 */
async function signWithCard(component, getChallenge, pin, onProgress) {
  const [challenge] = await Promise.all([getChallenge(), component.ready]);
  onProgress(TEXT.signing);
  const answer = await component.request({
    func: "MakeSignature",
    signatureType: challenge.signature_type,
    tbs: challenge.tbs,
    tbsEncoding: challenge.tbs_encoding,
    hashAlgorithm: challenge.hash_algorithm,
    withCardSN: "true",
    pin,
    nonce: challenge.challenge_id,
  }, SIGN_TIMEOUT_MS);
  checkAnswer(answer);

  let certificate = "";
  try {
    certificate = signingCertificate(await component.request({ func: "GetUserCert" }, CERT_TIMEOUT_MS));
  } catch {
    certificate = ""; // the PKCS#7 signature carries the certificate
  }
  return {
    challenge_id: challenge.challenge_id,
    signature: answer.signature,
    certificate,
    card_sn: typeof answer.cardSN === "string" ? answer.cardSN : "",
  };
}

function helpLinks() {
  return element("p", { id: "card-help", className: "method-links card-help" },
    ...HELP_LINKS.map((link) => element("a", {
      id: link.id, href: link.href, className: "method-links__link", target: "_blank", rel: "noopener noreferrer",
    }, link.text)));
}

function loadStylesheet() {
  if (!document.querySelector(`link[href="${STYLESHEET}"]`)) {
    document.head.append(element("link", { rel: "stylesheet", href: STYLESHEET }));
  }
}

/**
 * Build the PIN form in `panel`. `options.purpose` is "login" or "register";
 * `options.request(method, url, body)` calls the API; `options.submit(fields)` posts the signed
 * fields and returns { ok, message }; `options.onStart()` runs when a new attempt starts.
 */
export function mountCardForm(panel, options) {
  loadStylesheet();
  const pin = element("input", {
    id: "card-pin", name: "pin", className: "field__input", type: "password",
    inputMode: "numeric", autocomplete: "off", maxLength: 16,
  });
  const message = element("p", { id: "card-message", className: "field__error card-message", role: "alert" });
  const submit = element("button", {
    id: "card-submit", className: "button button--primary button--block", type: "submit",
  }, options.submitText || TEXT.submit);
  const help = helpLinks();
  const form = element("form", { id: "card-form", className: "method-form card-form", noValidate: true },
    element("p", { className: "lead" }, options.lead || TEXT.lead),
    element("div", { className: "field" },
      element("label", { htmlFor: "card-pin", className: "field__label" }, TEXT.pinLabel), pin),
    message,
    submit,
    help,
  );
  panel.append(form);

  let config = null;
  const configLoaded = options.request("GET", "/api/card/config").then((value) => {
    config = value;
  }).catch(() => {
    config = null;
  });

  function setBusy(text) {
    submit.disabled = Boolean(text);
    submit.setAttribute("aria-busy", String(Boolean(text)));
    submit.textContent = text || options.submitText || TEXT.submit;
  }

  function fail(text, key) {
    message.textContent = text;
    message.dataset.key = key || "";
    help.classList.toggle("card-help--highlight", SHOW_HELP.has(key));
    pin.focus();
  }

  async function onSubmit(event) {
    event.preventDefault();
    if (submit.disabled) {
      return;
    }
    const pinValue = pin.value;
    if (!pinValue) {
      fail(TEXT.emptyPin, "empty_pin");
      return;
    }
    if (!config) {
      await configLoaded;
      if (!config) {
        fail(TEXT.configFailed, "config");
        return;
      }
      // The click's user activation may be spent after waiting: the popup blocker then reports it.
    }
    message.textContent = "";
    options.onStart?.();

    let component;
    try {
      component = openComponent(config.component_url); // synchronous: still inside the click
    } catch (error) {
      fail(error.message, error.key);
      return;
    }
    setBusy(TEXT.opening);
    try {
      const getChallenge = () => options.request("POST", "/api/card/challenge", { purpose: options.purpose });
      const fields = await signWithCard(component, getChallenge, pinValue, setBusy);
      pin.value = "";
      component.close();
      setBusy(TEXT.verifying);
      const result = await options.submit(fields);
      if (!result.ok) {
        fail(result.message || TEXT.failed, result.key);
      } else if (result.message) {
        message.textContent = result.message;
        message.dataset.key = "ok";
      }
    } catch (error) {
      if (error instanceof ComponentError && error.key === "wrong_pin") {
        pin.value = "";
      }
      fail(error.message || TEXT.failed, error.key);
    } finally {
      component.close();
      setBusy("");
    }
  }

  form.addEventListener("submit", onSubmit);
  return { focus: () => pin.focus() };
}

/** Wire up the 自然人憑證 panel of the login page. `ctx` is the context that login.js builds. */
export function mount(panel, ctx) {
  const form = mountCardForm(panel, {
    purpose: "login",
    request: ctx.request,
    onStart: () => ctx.clearStatus(),
    async submit(fields) {
      const state = await ctx.startLogin(fields);
      if (state.state === "approved") {
        ctx.complete(state);
        return { ok: true };
      }
      return { ok: false, message: ctx.messageFor(state) || TEXT.failed, key: state.reason };
    },
  });
  return {
    activate() {
      form.focus();
    },
  };
}
