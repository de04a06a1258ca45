// 健保卡 login: reads the card through the NHI card component (a local WebSocket), then posts the
// card data, the H_Sign value and the registered password (註冊密碼). Builds its markup inside
// #panel-nhi. The component's address comes from GET /api/nhi/config.
//
// Protocol: text commands GetBasic, GetVersion, GetRandom and H_Sign?Random=<version><random>;
// a reply starts with "<command>:"; a failure is a bare 4-digit error code.
// NOTE: the GetBasic reply is read as base64 of the 57 raw bytes (see server/nhi_card.py); how
// the real component encodes them is unconfirmed.

import { element } from "./dom.js";

// A running component accepts the connection at once, so past this it counts as missing.
const CONNECT_TIMEOUT_MS = 3000;
// Reading the card and signing take a few seconds on a slow reader.
const REPLY_TIMEOUT_MS = 10000;
const DEFAULT_VERSION = "0001"; // the version prefix of the Random parameter
const RANDOM_PATTERN = /^\d{16}$/;
const BASIC_LENGTH = 57;

const TEXT = {
  lead: "請將健保卡插入讀卡機，輸入健保卡註冊密碼後登入。",
  emptyPassword: "請輸入健保卡註冊密碼。",
  submit: "登入",
  reading: "讀取健保卡中…",
  verifying: "驗證中…",
  missingComponent: "無法連線至健保卡元件。請確認已安裝並啟動健保卡元件，再重新登入。",
  noCard: "讀不到健保卡。請確認讀卡機已連接，且健保卡已正確插入。",
  badReply: "健保卡元件回應異常，請重新插入健保卡後再試；如仍失敗，請重新安裝健保卡元件。",
  configFailed: "無法取得健保卡登入設定，請重新整理頁面後再試。",
  failed: "登入失敗，請重新登入。",
};

// Errors after which the install help is shown beside the message.
const SHOW_INSTALL_HELP = new Set(["component_missing", "component_error", "nhi_card_rejected"]);

class ComponentError extends Error {
  constructor(key, message) {
    super(message);
    this.key = key;
  }
}

/** Decode base64 to bytes. */
function base64Bytes(text) {
  const binary = atob(text);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function ascii(bytes) {
  return String.fromCharCode(...bytes).trim();
}

/** Parse the 57 bytes of basic data: card number, Big5 name, ID number (the dates are unused). */
export function parseBasic(bytes) {
  if (bytes.length !== BASIC_LENGTH) {
    throw new ComponentError("component_error", TEXT.badReply);
  }
  let nameEnd = 32;
  while (nameEnd > 12 && (bytes[nameEnd - 1] === 0 || bytes[nameEnd - 1] === 0x20)) {
    nameEnd -= 1;
  }
  return {
    cardNumber: ascii(bytes.subarray(0, 12)),
    name: new TextDecoder("big5").decode(bytes.subarray(12, nameEnd)),
    idNumber: ascii(bytes.subarray(32, 42)),
  };
}

/** Open a WebSocket to the component; `send` keeps one command in flight at a time. */
function openComponent(url) {
  return new Promise((resolve, reject) => {
    let socket;
    try {
      socket = new WebSocket(url);
    } catch {
      reject(new ComponentError("component_missing", TEXT.missingComponent));
      return;
    }
    const timer = setTimeout(() => {
      socket.close();
      reject(new ComponentError("component_missing", TEXT.missingComponent));
    }, CONNECT_TIMEOUT_MS);
    socket.addEventListener("open", () => {
      clearTimeout(timer);
      resolve(socket);
    }, { once: true });
    socket.addEventListener("error", () => {
      clearTimeout(timer);
      reject(new ComponentError("component_missing", TEXT.missingComponent));
    }, { once: true });
  });
}

function send(socket, command) {
  const name = command.split("?")[0];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new ComponentError("component_error", TEXT.badReply));
    }, REPLY_TIMEOUT_MS);
    const onMessage = (event) => {
      cleanup();
      const reply = String(event.data);
      if (reply.startsWith(`${name}:`)) {
        resolve(reply.slice(name.length + 1));
      } else if (/^\d{4}$/.test(reply)) {
        reject(new ComponentError("no_card", TEXT.noCard));
      } else {
        reject(new ComponentError("component_error", TEXT.badReply));
      }
    };
    const onClose = () => {
      cleanup();
      reject(new ComponentError("component_missing", TEXT.missingComponent));
    };
    function cleanup() {
      clearTimeout(timer);
      socket.removeEventListener("message", onMessage);
      socket.removeEventListener("close", onClose);
    }
    socket.addEventListener("message", onMessage);
    socket.addEventListener("close", onClose);
    socket.send(command);
  });
}

/** Read the card: basic data, then an H_Sign over a fresh card random. */
async function readCard(url) {
  const socket = await openComponent(url);
  try {
    let basic;
    try {
      basic = parseBasic(base64Bytes(await send(socket, "GetBasic")));
    } catch (error) {
      throw error instanceof ComponentError ? error : new ComponentError("component_error", TEXT.badReply);
    }
    const version = await send(socket, "GetVersion").catch(() => DEFAULT_VERSION);
    const random = await send(socket, "GetRandom");
    if (!RANDOM_PATTERN.test(random)) {
      throw new ComponentError("component_error", TEXT.badReply);
    }
    const parameter = `${/^\d{4}$/.test(version) ? version : DEFAULT_VERSION}${random}`;
    const hSign = await send(socket, `H_Sign?Random=${parameter}`);
    return { ...basic, random: parameter, hSign };
  } finally {
    socket.close();
  }
}

function installHelp() {
  return element("section", { id: "nhi-help-install", className: "help-box", hidden: true, tabIndex: -1 },
    element("h3", { className: "help-box__title" }, "安裝健保卡元件"),
    element("ol", {},
      element("li", {}, "至衛生福利部中央健康保險署網站下載「健保卡元件」安裝程式，依作業系統（Windows、macOS 或 Linux）選擇版本並安裝。"),
      element("li", {}, "安裝後請重新開機或重新啟動瀏覽器，並確認讀卡機驅動程式已安裝。"),
      element("li", {}, "將健保卡晶片朝上插入讀卡機，再回到本頁重新登入。"),
      element("li", {}, "註冊密碼是您在健保署網站註冊健保卡網路服務時設定的密碼；尚未註冊者請先完成註冊。"),
    ),
  );
}

/** Wire up the NHI card panel. `ctx` is the context that login.js builds. */
export function mount(panel, ctx) {
  const cardInfo = element("p", { id: "nhi-card-info", className: "card-info", hidden: true });
  const password = element("input", {
    id: "nhi-password", name: "password", className: "field__input", type: "password",
    autocomplete: "off", maxLength: 64,
  });
  const message = element("p", { id: "nhi-message", className: "field__error", role: "alert" });
  const submit = element("button", { id: "nhi-submit", className: "button button--primary button--block", type: "submit" }, TEXT.submit);
  const installLink = element("a", { id: "nhi-install-link", href: "#nhi-help-install", className: "method-links__link" }, "安裝健保卡元件");
  const help = installHelp();
  const form = element("form", { id: "nhi-form", className: "method-form", noValidate: true },
    element("p", { className: "lead" }, TEXT.lead),
    cardInfo,
    element("div", { className: "field" },
      element("label", { htmlFor: "nhi-password", className: "field__label" }, "健保卡註冊密碼"), password),
    message,
    submit,
    element("p", { className: "method-links" }, installLink),
  );
  panel.append(form, help);

  let config = null;

  async function loadConfig() {
    if (!config) {
      config = await ctx.request("GET", "/api/nhi/config");
    }
    return config;
  }

  function showHelp() {
    help.hidden = false;
  }

  function setBusy(text) {
    submit.disabled = Boolean(text);
    submit.setAttribute("aria-busy", String(Boolean(text)));
    submit.textContent = text || TEXT.submit;
  }

  function fail(text, key) {
    message.textContent = text;
    if (SHOW_INSTALL_HELP.has(key)) {
      showHelp();
    }
    password.value = "";
    password.focus();
  }

  async function onSubmit(event) {
    event.preventDefault();
    if (submit.disabled) {
      return;
    }
    if (!password.value) {
      message.textContent = TEXT.emptyPassword;
      password.focus();
      return;
    }
    message.textContent = "";
    ctx.clearStatus();
    setBusy(TEXT.reading);
    try {
      let settings;
      try {
        settings = await loadConfig();
      } catch {
        fail(TEXT.configFailed, "config");
        return;
      }
      const card = await readCard(settings.component_url);
      cardInfo.textContent = `健保卡卡號 ${card.cardNumber.slice(0, 4)}****${card.cardNumber.slice(-4)}　${card.name}`;
      cardInfo.hidden = false;

      setBusy(TEXT.verifying);
      const state = await ctx.startLogin({
        card_number: card.cardNumber,
        id_number: card.idNumber,
        random: card.random,
        h_sign: card.hSign,
        password: password.value,
      });
      if (state.state === "approved") {
        password.value = "";
        ctx.complete(state);
      } else {
        fail(ctx.messageFor(state) || TEXT.failed, state.reason);
      }
    } catch (error) {
      fail(error.message, error.key);
    } finally {
      setBusy("");
    }
  }

  form.addEventListener("submit", onSubmit);
  installLink.addEventListener("click", (event) => {
    event.preventDefault();
    help.hidden = !help.hidden;
    if (!help.hidden) {
      help.focus();
    }
  });

  return {
    activate() {
      password.focus();
    },
  };
}
