// Client for the login API: JSON requests, and the live state of one login over a WebSocket
// with polling as the fallback. Every login method uses it. It does not touch the DOM.

export const TERMINAL_STATES = new Set(["approved", "denied", "expired", "cancelled", "failed"]);

// Polling period when the WebSocket is unavailable: an ending shows within 2 s at one light GET each.
export const POLL_INTERVAL_MS = 2000;
// Reconnect tries after the socket fails or drops. Polling covers the gaps and goes on after the last try.
const MAX_RECONNECTS = 3;
// First reconnect delay, doubled on each try (1 s, 2 s, 4 s).
const RECONNECT_BASE_MS = 1000;
// The server sends the state right after the handshake. When a socket stays silent this long,
// e.g. behind a proxy that accepts the upgrade but passes nothing, fast polling starts beside it.
const FIRST_MESSAGE_TIMEOUT_MS = 4000;
// Slow polling beside a working socket, so a change event lost between server and socket delays
// the ending by at most this long instead of stalling the page until expiry.
const SAFETY_POLL_INTERVAL_MS = 10000;

const NETWORK_MESSAGE = "無法連線至登入服務，請檢查網路連線後再試。";
const SERVER_MESSAGE = "登入服務暫時無法使用，請稍後再試。";

/** An error response of the API, or a failed connection (status 0). */
export class ApiError extends Error {
  constructor(status, body) {
    const data = body && typeof body === "object" ? body : {};
    super(typeof data.message === "string" && data.message ? data.message : defaultMessage(status));
    this.name = "ApiError";
    this.status = status;
    if (typeof data.error === "string") {
      this.key = data.error;
    } else {
      this.key = status === 0 ? "network_error" : "http_error";
    }
    this.retryAfter = Number.isFinite(data.retry_after) ? data.retry_after : null;
    this.body = data;
  }
}

function defaultMessage(status) {
  return status === 0 ? NETWORK_MESSAGE : SERVER_MESSAGE;
}

/**
 * Send a request to the API and return the parsed JSON response body.
 * Throws ApiError for a non-2xx status or a failed connection.
 */
export async function requestJson(method, url, body) {
  const init = {
    method,
    credentials: "same-origin",
    cache: "no-store",
    headers: { Accept: "application/json" },
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }

  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, null);
  }

  let data = null;
  try {
    const text = await response.text();
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, data);
  }
  return data ?? {};
}

function socketUrl(path) {
  const url = new URL(path, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

/**
 * Follow a login until it reaches a terminal state.
 *
 * `login` needs `events_url` and `status_url` (as returned by POST /api/logins). `onState` gets
 * every state message, the last one terminal. When the server no longer finds the login, or it
 * belongs to another browser, the watch ends with a synthetic `failed` state and the server's message.
 *
 * Polling runs the whole time: every 2 s while no WebSocket delivers, every 10 s beside one that does.
 * Returns the function that stops the watch (safe to call twice). Its `refresh()` property polls
 * once now, e.g. when the local countdown reaches zero.
 */
export function watchLogin(login, onState) {
  let finished = false;
  let socket = null;
  let socketHealthy = false;
  let reconnects = 0;
  let reconnectTimer = null;
  let pollTimer = null;
  let pollInFlight = false;

  function deliver(state) {
    if (finished || !state || typeof state.state !== "string") {
      return;
    }
    if (TERMINAL_STATES.has(state.state)) {
      stop();
    }
    try {
      onState(state);
    } catch (error) {
      console.error("login state handler failed", error);
    }
  }

  // Polling: one timer at a time, so rescheduling never starts a second chain.

  function schedulePoll(delay) {
    if (finished) {
      return;
    }
    clearTimeout(pollTimer);
    pollTimer = setTimeout(pollOnce, delay);
  }

  function pollInterval() {
    return socketHealthy ? SAFETY_POLL_INTERVAL_MS : POLL_INTERVAL_MS;
  }

  async function pollOnce() {
    if (finished || pollInFlight) {
      return;
    }
    pollInFlight = true;
    let nextDelay = pollInterval();
    try {
      deliver(await requestJson("GET", login.status_url));
    } catch (error) {
      nextDelay = handlePollError(error);
    } finally {
      pollInFlight = false;
    }
    schedulePoll(nextDelay);
  }

  // Return the delay before the next poll. Ends the watch when retrying cannot help.
  function handlePollError(error) {
    if (!(error instanceof ApiError)) {
      return pollInterval();
    }
    if (error.status === 429 && error.retryAfter) {
      return Math.max(pollInterval(), error.retryAfter * 1000);
    }
    if ([403, 404, 409].includes(error.status)) {
      deliver({ ...login, state: "failed", reason: error.key, message: error.message });
    }
    return pollInterval();
  }

  // WebSocket

  function connect() {
    if (finished) {
      return;
    }
    if (typeof window.WebSocket !== "function") {
      schedulePoll(0);
      return;
    }
    try {
      socket = new window.WebSocket(socketUrl(login.events_url));
    } catch {
      socket = null;
      socketFailed();
      return;
    }

    const current = socket;
    current.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (!message || message.type !== "state") {
        return;
      }
      if (!socketHealthy) {
        socketHealthy = true;
        reconnects = 0;
        schedulePoll(SAFETY_POLL_INTERVAL_MS);
      }
      deliver(message);
    });
    current.addEventListener("close", () => {
      if (current === socket) {
        socket = null;
        socketFailed();
      }
    });
    // An "error" event is always followed by "close", which handles the failure.
  }

  function socketFailed() {
    socketHealthy = false;
    if (finished) {
      return;
    }
    // Poll at once: the socket may have closed right after a terminal state that never arrived.
    schedulePoll(0);
    if (reconnects < MAX_RECONNECTS) {
      const delay = RECONNECT_BASE_MS * 2 ** reconnects;
      reconnects += 1;
      clearTimeout(reconnectTimer);
      reconnectTimer = setTimeout(connect, delay);
    }
  }

  function stop() {
    if (finished) {
      return;
    }
    finished = true;
    clearTimeout(pollTimer);
    clearTimeout(reconnectTimer);
    if (socket) {
      const closing = socket;
      socket = null;
      try {
        closing.close(1000);
      } catch {
        // Already closed.
      }
    }
  }

  function refresh() {
    if (!finished) {
      pollOnce();
    }
  }

  // The first poll doubles as the check for a silent socket.
  schedulePoll(FIRST_MESSAGE_TIMEOUT_MS);
  connect();
  stop.refresh = refresh;
  return stop;
}
