// Phone simulator page: plays the 行動自然人憑證 app in the browser against the embedded
// authority. It keeps an EC P-256 key (WebCrypto, private key not extractable) per ID number in
// IndexedDB, enrolls it at /twfido/app/enroll and answers prompts on the /twfido/app/channel
// WebSocket (protocol in push/authority/channel.py). WebCrypto signs in raw r||s form, which
// the server accepts next to DER.

const AUTHORITY = "/twfido";
const DB_NAME = "ebas-phone-simulator";
const DB_STORE = "devices";
const LAST_ID_KEY = "ebas-phone-simulator:last-id";
const RECONNECT_MIN_MS = 1000; // first retry after a dropped channel
const RECONNECT_MAX_MS = 15000; // retries back off to this and stay there
const TICK_MS = 500; // countdown refresh, twice a second so seconds never skip visibly
const ID_PATTERN = /^[A-Z][A-D1289]\d{8}$/; // format only; the server checks the check digit

const TEXT = {
  notEnrolled: "尚未綁定裝置。",
  enrolling: "正在綁定裝置…",
  connecting: "正在連線至驗證服務…",
  ready: "已連線，等待登入通知。",
  disconnected: "連線中斷，稍後自動重新連線…",
  badId: "請輸入正確的身分證統一編號（1 個英文字母加 9 位數字）。",
  noCrypto: "此瀏覽器不支援 WebCrypto（需要 https 或 localhost），無法使用模擬器。",
  device: (id, deviceId) => `已綁定：${id}（裝置 ${deviceId}）`,
  sp: (name) => `${name} 要求登入`,
  approved: "已確認登入，請回到登入頁面。",
  denied: "已拒絕此次登入。",
  reasons: {
    wrong_code: "驗證碼不符，此次登入已取消。",
    bad_signature: "裝置簽章驗證失敗，此次登入已取消。",
    expired: "登入請求已逾時。",
    already_answered: "此登入請求已處理過。",
    not_found: "找不到此登入請求。",
  },
  unknownDevice: "驗證服務找不到此裝置，請重新綁定。",
  scanEmpty: "請先貼上 QR Code 內容。",
};

const $ = (id) => document.getElementById(id);

let device = null; // { idNumber, deviceId, privateKey }
let socket = null;
let reconnectDelay = RECONNECT_MIN_MS;
let reconnectTimer = null;
let prompts = []; // push frames waiting for an answer, oldest first
let countdownTimer = null;

// -- IndexedDB -----------------------------------------------------------------------------

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(DB_STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function dbRun(mode, action) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const transaction = db.transaction(DB_STORE, mode);
    const request = action(transaction.objectStore(DB_STORE));
    transaction.oncomplete = () => resolve(request.result);
    transaction.onerror = () => reject(transaction.error);
  });
}

const loadDevice = (idNumber) => dbRun("readonly", (store) => store.get(idNumber));
const saveDevice = (record) => dbRun("readwrite", (store) => store.put(record, record.idNumber));

// -- crypto --------------------------------------------------------------------------------

function toBase64(bytes) {
  let text = "";
  new Uint8Array(bytes).forEach((b) => {
    text += String.fromCharCode(b);
  });
  return btoa(text);
}

function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

async function sign(base64Data) {
  const signature = await crypto.subtle.sign(
    { name: "ECDSA", hash: "SHA-256" },
    device.privateKey,
    fromBase64(base64Data),
  );
  return toBase64(signature);
}

async function publicKeyPem(publicKey) {
  const spki = toBase64(await crypto.subtle.exportKey("spki", publicKey));
  const lines = spki.match(/.{1,64}/g).join("\n");
  return `-----BEGIN PUBLIC KEY-----\n${lines}\n-----END PUBLIC KEY-----\n`;
}

// -- enrollment ----------------------------------------------------------------------------

async function enroll(idNumber) {
  setStatus(TEXT.enrolling);
  const keys = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, [
    "sign",
    "verify",
  ]);
  const response = await fetch(`${AUTHORITY}/app/enroll`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      id_number: idNumber,
      public_key: await publicKeyPem(keys.publicKey),
      device_name: "browser-simulator",
    }),
  });
  const answer = await response.json().catch(() => ({}));
  if (response.status !== 201) {
    throw new Error(answer.message || `綁定失敗（HTTP ${response.status}）。`);
  }
  const record = { idNumber, deviceId: answer.device_id, privateKey: keys.privateKey };
  await saveDevice(record);
  localStorage.setItem(LAST_ID_KEY, idNumber);
  return record;
}

// -- channel -------------------------------------------------------------------------------

function connect() {
  clearTimeout(reconnectTimer);
  if (socket) {
    socket.onclose = null;
    socket.close();
  }
  setStatus(TEXT.connecting);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}${AUTHORITY}/app/channel`);
  socket.onmessage = (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    handleFrame(frame).catch((error) => showResult(String(error.message || error), false));
  };
  socket.onclose = () => {
    setStatus(TEXT.disconnected);
    reconnectTimer = setTimeout(connect, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_MS);
  };
}

function send(frame) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify(frame));
  }
}

async function handleFrame(frame) {
  switch (frame.type) {
    case "challenge":
      send({ type: "hello", device_id: device.deviceId, signature: await sign(frame.nonce) });
      break;
    case "ready":
      reconnectDelay = RECONNECT_MIN_MS;
      setStatus(TEXT.ready);
      break;
    case "push":
      if (!prompts.some((p) => p.txn === frame.txn)) {
        prompts.push({ ...frame, deadline: Date.now() + frame.expires_in * 1000 });
      }
      showPrompt();
      break;
    case "result":
      showResult(frame.ok && frame.reason === "approved" ? TEXT.approved
        : frame.ok ? TEXT.denied : TEXT.reasons[frame.reason] || frame.reason, frame.ok);
      break;
    case "error":
      if (frame.reason === "unknown_device") {
        socket.onclose = null;
        setStatus(TEXT.unknownDevice);
      }
      showResult(frame.message || frame.reason, false);
      break;
    default:
      break;
  }
}

// -- prompt view ---------------------------------------------------------------------------

function showPrompt() {
  const now = Date.now();
  prompts = prompts.filter((p) => p.deadline > now);
  const current = prompts[0];
  $("prompt").hidden = !current;
  clearInterval(countdownTimer);
  if (!current) {
    return;
  }

  $("prompt-sp").textContent = TEXT.sp(current.sp_name);
  $("prompt-hint").textContent = current.hint;
  const choices = $("prompt-choices");
  choices.replaceChildren(
    ...current.choices.map((code) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "choice";
      button.textContent = code;
      button.dataset.code = code;
      button.addEventListener("click", () => answer(current, true, code));
      return button;
    }),
  );
  const matching = current.choices.length > 0;
  $("prompt-instruction").hidden = !matching;
  choices.hidden = !matching;
  $("approve-button").hidden = matching;

  const tick = () => {
    const left = Math.max(0, Math.ceil((current.deadline - Date.now()) / 1000));
    $("prompt-countdown").textContent = String(left);
    if (left === 0) {
      showPrompt();
    }
  };
  tick();
  countdownTimer = setInterval(tick, TICK_MS);
}

async function answer(prompt, approve, code = null) {
  prompts = prompts.filter((p) => p.txn !== prompt.txn);
  showPrompt();
  if (!approve) {
    send({ type: "deny", txn: prompt.txn });
    return;
  }
  send({ type: "approve", txn: prompt.txn, choice: code, signature: await sign(prompt.challenge) });
}

function showResult(text, ok) {
  const box = $("result");
  box.textContent = text;
  box.className = `result ${ok ? "result--ok" : "result--error"}`;
  box.hidden = false;
}

function setStatus(text) {
  $("status").textContent = text;
}

// -- wiring --------------------------------------------------------------------------------

async function start(idNumber, { fresh }) {
  let record = fresh ? null : await loadDevice(idNumber);
  if (!record) {
    record = await enroll(idNumber);
  }
  device = record;
  $("device-line").textContent = TEXT.device(record.idNumber, record.deviceId);
  $("device-line").hidden = false;
  connect();
}

function init() {
  if (!window.crypto || !crypto.subtle || !window.indexedDB) {
    setStatus(TEXT.noCrypto);
    $("enroll-button").disabled = true;
    return;
  }

  $("enroll-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const idNumber = $("id-number").value.normalize("NFKC").replace(/\s+/g, "").toUpperCase();
    if (!ID_PATTERN.test(idNumber)) {
      setStatus(TEXT.badId);
      return;
    }
    $("enroll-button").disabled = true;
    start(idNumber, { fresh: true })
      .catch((error) => setStatus(String(error.message || error)))
      .finally(() => {
        $("enroll-button").disabled = false;
      });
  });

  $("approve-button").addEventListener("click", () => prompts[0] && answer(prompts[0], true));
  $("deny-button").addEventListener("click", () => prompts[0] && answer(prompts[0], false));

  $("scan-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const payload = $("scan-payload").value.trim();
    if (!payload) {
      showResult(TEXT.scanEmpty, false);
      return;
    }
    send({ type: "scan", payload });
    $("scan-payload").value = "";
  });

  const lastId = localStorage.getItem(LAST_ID_KEY);
  if (lastId) {
    $("id-number").value = lastId;
    loadDevice(lastId)
      .then((record) => record && start(lastId, { fresh: false }))
      .catch(() => setStatus(TEXT.notEnrolled));
  }
}

init();
