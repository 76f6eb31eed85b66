// The supervisors' wallboard, the page's entry module: a supervisor logs in, then the board is
// fed by /ws/wallboard alone (one computed state pushed by the service; nothing here polls).
// The service rates the figures against the target (board.*.rating), so the page only lays
// them out: tiles.js, queues-table.js, agents-table.js, day-chart.js; supervisor-actions.js
// sends what the supervisor asks for.

import * as C from "/static/common/common.js";
import { clearAgents, relabelAgentRows, renderAgents } from "./agents-table.js";
import { addPoint, buildChart, destroyChart, resizeChart, setHistory, updateChart } from "./day-chart.js";
import { clearQueues, renderQueues } from "./queues-table.js";
import { actAs } from "./supervisor-actions.js";
import { renderStrip, renderTiles } from "./tiles.js";
import { setText } from "./wallboard-format.js";

const { $ } = C;
const session = C.savedSession("wallboard");

// Updates come at least every second: after this long without one the figures are old.
const STALE_AFTER_MS = 5000;

let current = null; // {token, name, display_name} of the logged-in supervisor
let socket = null;
let lastState = null;
let lastMessageAt = 0;
let link = "connecting";

// -- log-in and session ----------------------------------------------------------------

function showLogin(message) {
  $("board").hidden = true;
  $("logout").hidden = true;
  $("who").hidden = true;
  $("link").hidden = true;
  $("banner").hidden = true;
  $("login").hidden = false;
  const error = $("login-error");
  error.textContent = message || "";
  error.hidden = !message;
  $("login-name").focus();
}

function showLoginError(message) {
  const error = $("login-error");
  error.textContent = message;
  error.hidden = false;
}

async function login(event) {
  event.preventDefault();
  const name = $("login-name").value.trim();
  const password = $("login-password").value;
  if (!name || !password) {
    showLoginError(C.t("login.missing"));
    return;
  }
  const button = $("login-submit");
  button.disabled = true;
  try {
    const result = await C.api("POST", "/api/login", {
      body: { name, password, roles: ["supervisor"] },
    });
    $("login-password").value = "";
    if (!result.agent || result.agent.role !== "supervisor") {
      // Refused and not kept: ending the session also takes the agent out of the ACD again.
      await C.api("POST", "/api/logout", { token: result.token }).catch(() => null);
      showLoginError(C.t("login.supervisors_only"));
      return;
    }
    current = {
      token: result.token,
      name: result.agent.name,
      display_name: result.agent.display_name || result.agent.name,
    };
    session.save(current);
    showBoard();
  } catch (err) {
    if (err.status === 401) showLoginError(C.t("login.wrong"));
    else if (err.status === 403) showLoginError(C.t("login.supervisors_only"));
    else if (err.status === 429) showLoginError(C.t("login.throttled"));
    else showLoginError(err.message);
  } finally {
    button.disabled = false;
  }
}

async function logout() {
  const token = current && current.token;
  stopBoard();
  session.clear();
  current = null;
  if (token) await C.api("POST", "/api/logout", { token }).catch(() => null);
  showLogin();
}

function sessionEnded() {
  stopBoard();
  session.clear();
  current = null;
  showLogin(C.t("login.expired"));
}

// -- the board -------------------------------------------------------------------------

function showBoard() {
  $("login").hidden = true;
  $("board").hidden = false;
  $("logout").hidden = false;
  $("link").hidden = false;
  const who = $("who");
  who.textContent = current.display_name;
  who.hidden = false;
  buildChart(lastState);
  socket = new C.LiveSocket("/ws/wallboard?token=" + encodeURIComponent(current.token), {
    onMessage,
    onStatus,
    stillAuthorized,
  });
  socket.open();
}

function stopBoard() {
  if (socket) socket.close();
  socket = null;
  lastState = null;
  lastMessageAt = 0;
  destroyChart();
  clearAgents();
  clearQueues();
}

// Asked by LiveSocket after a drop: is the session still good? (401/403: no.)
async function stillAuthorized() {
  if (!current) return false;
  try {
    await C.api("GET", "/api/wallboard", { token: current.token });
    return true;
  } catch (err) {
    if (err.status === 401 || err.status === 403) return false;
    throw err;
  }
}

function onStatus(status) {
  if (status === "refused") {
    sessionEnded();
    return;
  }
  link = status;
  const el = $("link");
  el.dataset.state = status;
  setText("link-text", C.t("link." + status));
  if (status === "offline") {
    showBanner(C.t("banner.offline"));
    $("board").classList.add("stale");
  } else if (status === "online") {
    hideBanner();
  }
}

function showBanner(text) {
  const banner = $("banner");
  banner.textContent = text;
  banner.hidden = false;
}

function hideBanner() {
  $("banner").hidden = true;
}

// A local check only (no request): the service pushes at least every second. A connection
// that went quiet without closing (Wi-Fi gone, a proxy holding it) is dropped so the socket
// reconnects, instead of showing old figures as live.
let kicked = false;
function watchFreshness() {
  if (!lastState || link !== "online") return;
  const age = Date.now() - lastMessageAt;
  if (age <= STALE_AFTER_MS) {
    kicked = false;
    return;
  }
  showBanner(C.t("banner.stale", { seconds: Math.round(age / 1000) }));
  $("board").classList.add("stale");
  $("link").dataset.state = "offline";
  setText("link-text", C.t("link.offline"));
  if (!kicked && socket && socket.ws) {
    kicked = true;
    socket.ws.close();
  }
}

function onMessage(message) {
  if (message.type !== "wallboard") return;
  lastMessageAt = Date.now();
  if (message.history) setHistory(message.history);
  if (message.point) addPoint(message.point);
  lastState = message;
  $("board").classList.remove("stale");
  if (link === "online") hideBanner();
  render(message);
}

function render(state) {
  const board = state.board;
  setText(
    "clock",
    new Date(state.at * 1000).toLocaleTimeString(C.language() === "pl" ? "pl-PL" : "en-GB", {
      hour12: false,
    })
  );
  $("clock").title = C.t("target", {
    percent: state.target_sl_percent,
    seconds: state.target_seconds,
  });
  renderTiles(state, board);
  renderStrip(board.agents);
  renderQueues(board.queues);
  renderAgents(state.agents || []);
  updateChart(state);
  renderFaults(state.faults || {});
}

// A part of the service that is down (the phone system): what it means for residents, in
// words, above everything else.
function renderFaults(faults) {
  const down = Object.entries(faults).filter(([, part]) => part && part.ok === false);
  const el = $("faults");
  el.hidden = down.length === 0;
  el.textContent = down
    .map(([name, part]) =>
      C.t("fault." + name, { state: C.t("fault.state." + part.state), seconds: Math.round(part.for_seconds || 0) })
    )
    .join(" · ");
}

// -- start -----------------------------------------------------------------------------

function onLanguageSwitched() {
  document.title = C.t("title") + " — CityLine";
  if (!current) return;
  setText("link-text", C.t("link." + link));
  relabelAgentRows();
  buildChart(lastState);
  if (lastState) render(lastState);
}

function start() {
  C.translate();
  document.title = C.t("title") + " — CityLine";
  actAs({ token: () => current.token, sessionEnded });
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("language").addEventListener("click", () =>
    C.setLanguage(C.language() === "pl" ? "en" : "pl")
  );
  C.onLanguage(onLanguageSwitched);
  new ResizeObserver(resizeChart).observe($("chart"));
  setInterval(watchFreshness, 1000);

  const saved = session.load();
  if (saved && saved.token) {
    current = saved;
    showBoard();
  } else {
    showLogin();
  }
}

try {
  await C.loadTranslations("/static/wallboard/wallboard.i18n.json");
} catch (err) {
  console.error("the page's texts did not load", err);
}
start();
