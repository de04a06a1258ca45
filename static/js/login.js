// Login page shell: method tabs, the shared status line, and the helpers every method gets.
//
// A login method is an ES module exporting `mount(container, context)`. It is registered by
// importing it here (the mobile credential) or in ./methods/index.js (the other methods).
// `mount` may return a handle with optional `activate(options)`, `deactivate()` and
// `onEscape(event)`. `activate` gets `{ initial, keyboard }`: `initial` on page load, `keyboard`
// when the person moved between tabs with arrow keys, where focus stays on the tab.

import { ApiError, requestJson, watchLogin } from "./status.js";
import * as mobile from "./mobile.js";
import { METHODS as LATER_METHODS } from "./methods/index.js";

// Fallback texts for states the server sent without a message.
const STATE_MESSAGES = {
  approved: "驗證成功，登入中…",
  denied: "您已在 App 中拒絕此次登入。",
  expired: "登入作業已逾時，請重新登入。",
  cancelled: "登入已取消。",
  failed: "登入失敗，請稍後再試或改用其他登入方式。",
};
const COMPLETE_FAILED_MESSAGE = "無法完成登入，請重新登入。";

let tabs = Array.from(document.querySelectorAll('[role="tab"][data-method]'));
const statusBox = document.getElementById("status-message");

// Last status text per method, so a method's message is still there after switching tabs and back.
const statuses = new Map();
const handles = new Map();
let activeMethod = tabs.find((tab) => tab.getAttribute("aria-selected") === "true")?.dataset.method;

/** Return the zh-TW text for a login state: the server's message, else a generic one. */
export function messageForState(state) {
  if (state && typeof state.message === "string" && state.message) {
    return state.message;
  }
  return STATE_MESSAGES[state?.state] ?? STATE_MESSAGES.failed;
}

/** Accept only a path on this site as complete_url, so a malformed server response cannot post elsewhere. */
function isLocalPath(url) {
  return typeof url === "string" && url.startsWith("/") && !url.startsWith("//") && !url.includes("\\");
}

/**
 * Post the login assertion of an approved state to its complete_url (a normal form submission,
 * so the browser follows the server's redirect). Returns false when the state cannot be completed.
 */
export function submitAssertion(state) {
  if (!state || typeof state.assertion !== "string" || !state.assertion || !isLocalPath(state.complete_url)) {
    return false;
  }
  const form = document.createElement("form");
  form.method = "post";
  form.action = state.complete_url;
  form.hidden = true;

  const field = document.createElement("input");
  field.type = "hidden";
  field.name = "assertion";
  field.value = state.assertion;
  form.append(field);

  document.body.append(form);
  form.submit();
  return true;
}

function renderStatus() {
  const entry = statuses.get(activeMethod);
  if (!entry || !entry.text) {
    statusBox.textContent = "";
    delete statusBox.dataset.kind;
    return;
  }
  statusBox.dataset.kind = entry.kind;
  statusBox.textContent = entry.text;
}

/** Show a status line for `method`: kind is "info", "success", "warning" or "error". */
export function showStatus(method, text, kind = "info") {
  statuses.set(method, { text, kind });
  if (method === activeMethod) {
    renderStatus();
  }
}

/** Build the helpers handed to a method's mount(). */
function createContext(method) {
  return {
    method,
    ApiError,
    request: requestJson,
    watchLogin,
    messageFor: messageForState,
    startLogin: (fields) => requestJson("POST", "/api/logins", { ...fields, method }),
    cancelLogin: (login) => requestJson("DELETE", login.status_url),
    showStatus: (text, kind) => showStatus(method, text, kind),
    clearStatus: () => showStatus(method, "", "info"),
    isActive: () => activeMethod === method,
    // Show the success line and post the assertion. Returns false when the state carries none.
    complete(state) {
      if (!submitAssertion(state)) {
        showStatus(method, COMPLETE_FAILED_MESSAGE, "error");
        return false;
      }
      showStatus(method, STATE_MESSAGES.approved, "success");
      return true;
    },
  };
}

function panelOf(method) {
  return document.querySelector(`[role="tabpanel"][data-method="${method}"]`);
}

function mountMethod(method, module) {
  const panel = panelOf(method);
  const container = document.getElementById(`panel-${method}`);
  if (!panel || !container || typeof module?.mount !== "function") {
    console.error("login method %s cannot be mounted", method);
    return;
  }
  try {
    handles.set(method, module.mount(container, createContext(method)) ?? {});
  } catch (error) {
    console.error("login method %s failed to mount", method, error);
    return;
  }
  panel.querySelector(".coming-soon")?.remove();
}

function selectTab(method, { focus = false } = {}) {
  if (method === activeMethod) {
    return;
  }
  handles.get(activeMethod)?.deactivate?.();

  let selectedTab = null;
  for (const tab of tabs) {
    const selected = tab.dataset.method === method;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    if (selected) {
      selectedTab = tab;
    }
    const panel = panelOf(tab.dataset.method);
    if (panel) {
      panel.hidden = !selected;
    }
  }
  activeMethod = method;
  renderStatus();
  handles.get(method)?.activate?.({ initial: false, keyboard: focus });

  // Arrow-key navigation keeps focus on the tabs even if a method's activate() moved it.
  if (focus) {
    selectedTab?.focus();
  }
}

// Arrow keys move between tabs (WAI-ARIA tabs pattern); Up/Down also move because the tabs
// wrap into two rows on phones.
function onTabKeydown(event) {
  const index = tabs.indexOf(event.currentTarget);
  const moves = {
    ArrowRight: index + 1,
    ArrowDown: index + 1,
    ArrowLeft: index - 1,
    ArrowUp: index - 1,
    Home: 0,
    End: tabs.length - 1,
  };
  if (!(event.key in moves)) {
    return;
  }
  event.preventDefault();
  const next = tabs[(moves[event.key] + tabs.length) % tabs.length];
  selectTab(next.dataset.method, { focus: true });
}

// The methods this server offers (server.methods); every tab when the list cannot be read.
async function enabledMethods() {
  try {
    const answer = await requestJson("GET", "/api/methods");
    return new Set(answer.methods);
  } catch (error) {
    console.warn("login methods unknown, showing every tab", error);
    return new Set(tabs.map((tab) => tab.dataset.method));
  }
}

// Remove the tabs and panels of methods this server does not offer.
function dropDisabled(enabled) {
  for (const tab of tabs) {
    if (!enabled.has(tab.dataset.method)) {
      panelOf(tab.dataset.method)?.remove();
      tab.remove();
    }
  }
  tabs = tabs.filter((tab) => enabled.has(tab.dataset.method));
  if (!enabled.has(activeMethod) && tabs.length > 0) {
    activeMethod = undefined;
    selectTab(tabs[0].dataset.method);
  }
}

async function start() {
  const enabled = await enabledMethods();
  dropDisabled(enabled);
  for (const tab of tabs) {
    tab.addEventListener("click", () => selectTab(tab.dataset.method));
    tab.addEventListener("keydown", onTabKeydown);
  }

  for (const [method, module] of Object.entries({ mobile, ...LATER_METHODS })) {
    if (enabled.has(method)) {
      mountMethod(method, module);
    }
  }
  handles.get(activeMethod)?.activate?.({ initial: true, keyboard: false });

  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !event.defaultPrevented) {
      handles.get(activeMethod)?.onEscape?.(event);
    }
  });

  // Coming back with the Back button after a completed login must not show a stale waiting view.
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) {
      window.location.reload();
    }
  });
}

start();
