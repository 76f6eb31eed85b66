// The agent's desk, the page's entry module: log-in, the desk socket (state, pops, call news),
// keyboard shortcuts and the language switch. The parts: agent-state.js (Ready / Pause),
// softphone.js (JsSIP), screen-pop.js, case-form.js, desk-banner.js; desk-state.js holds what
// they share.

import * as C from "/static/common/common.js";
import { fillPauseReasons, showState, showStateTimer, wireAgentState } from "./agent-state.js";
import { clearCase, loadServices, saveCase, saveDraft, showSavedAgain, showServiceFields } from "./case-form.js";
import { clearProblems, setProblem, showProblemsAgain } from "./desk-banner.js";
import { desk, marks } from "./desk-state.js";
import { onCallUpdate, refreshDuplicates, renderPop, restorePop, showPop } from "./screen-pop.js";
import {
  answer,
  hangup,
  loadTransferTargets,
  showCallTimer,
  showPhone,
  showPhoneBadge,
  startPhone,
  stopPhone,
  wirePhone,
} from "./softphone.js";

const { $ } = C;
const session = C.savedSession("desk");

// -- log-in ----------------------------------------------------------------------------------
// Why the server ended this desk's session -> what the log-in form says (a log-out: nothing).
const SESSION_ENDED = {
  logged_in_elsewhere: "login.ended_elsewhere",
  logged_out_by_supervisor: "login.ended_by_supervisor",
  logged_out: "",
};

function showLogin(messageKey) {
  $("login").hidden = false;
  $("desk").hidden = true;
  $("who").hidden = true;
  $("logout").hidden = true;
  $("login-error").textContent = messageKey ? C.t(messageKey) : "";
  $("login-name").focus();
}

async function submitLogin(event) {
  event.preventDefault();
  const button = $("login-submit");
  button.disabled = true;
  $("login-error").textContent = "";
  try {
    const result = await C.api("POST", "/api/login", {
      body: { name: $("login-name").value.trim(), password: $("login-password").value, roles: ["agent"] },
    });
    $("login-password").value = "";
    // The SIP password stays in this page's memory only; a reload asks the server again.
    session.save({ token: result.token, agent: result.agent });
    start(result);
  } catch (err) {
    if (err.status === 403) {
      $("login-error").textContent = C.t("login.not_agent");
    } else if (err.status === 429) {
      $("login-error").textContent = C.t("login.throttled", { seconds: err.retryAfter || 60 });
    } else if (err.status === 401) {
      $("login-error").textContent = C.t("login.wrong");
    } else {
      $("login-error").textContent = err.message;
    }
  } finally {
    button.disabled = false;
  }
}

async function logout() {
  if (desk.call) return; // finish the call first
  try {
    await C.api("POST", "/api/logout", { token: desk.token });
  } catch (err) {
    console.warn("logout", err);
  }
  stop();
  session.clear();
  showLogin();
}

function stop() {
  if (desk.socket) desk.socket.close();
  desk.socket = null;
  stopPhone();
  clearProblems();
}

async function resume(saved) {
  try {
    const sip = await C.api("GET", "/api/me/sip", { token: saved.token });
    start({ token: saved.token, agent: saved.agent, sip });
  } catch (err) {
    if (err.status === 401 || err.status === 403) {
      session.clear();
      showLogin("login.expired");
    } else {
      showLogin(); // the service is out of reach: log in again when it is back
      $("login-error").textContent = err.message;
    }
  }
}

// -- the desk --------------------------------------------------------------------------------
function start(saved) {
  desk.token = saved.token;
  desk.agent = saved.agent;
  desk.sip = saved.sip;
  $("login").hidden = true;
  $("desk").hidden = false;
  $("who").hidden = false;
  $("logout").hidden = false;
  $("agent-name").textContent = saved.agent.display_name || saved.agent.name;
  restorePop();
  loadServices();
  loadTransferTargets();
  openSocket();
  startPhone();
}

function openSocket() {
  desk.socket = new C.LiveSocket("/ws/agent?token=" + encodeURIComponent(desk.token), {
    onMessage: onDeskMessage,
    onStatus(status) {
      if (status === "online") setProblem("socket", null);
      else if (status === "offline") setProblem("socket", "banner.offline", "error");
      else if (status === "refused") {
        stop();
        session.clear();
        showLogin("login.expired");
      }
    },
    async stillAuthorized() {
      try {
        await C.api("GET", "/api/me", { token: desk.token });
        return true;
      } catch (err) {
        return err.status !== 401;
      }
    },
  });
  desk.socket.open();
}

function onDeskMessage(message) {
  if (message.type === "hello" || message.type === "state") {
    showState(message.acd);
    if (message.type === "hello" && message.agent) {
      $("agent-name").textContent = message.agent.display_name || message.agent.name;
    }
  } else if (message.type === "pop") {
    marks.push({ kind: "pop", call_id: message.call_id, at: performance.now(), wall: Date.now() });
    showPop(message, true);
    // After the next paint: when the agent can actually see it.
    requestAnimationFrame(() =>
      setTimeout(() => marks.push({ kind: "pop_visible", call_id: message.call_id, at: performance.now() }), 0),
    );
  } else if (message.type === "call") {
    onCallUpdate(message);
  } else if (message.type === "session_ended") {
    // Logged in at another desk, or logged out by a supervisor: this desk closes and says why.
    stop();
    session.clear();
    showLogin(message.reason in SESSION_ENDED ? SESSION_ENDED[message.reason] : "login.expired");
  } else if (message.type === "error") {
    console.warn("server refused a desk message:", message.error);
  }
}

// -- wiring ----------------------------------------------------------------------------------
function tick() {
  showCallTimer();
  showStateTimer();
}

function onKey(event) {
  if ($("desk").hidden) return;
  if (event.altKey && (event.key === "a" || event.key === "A")) {
    event.preventDefault();
    answer();
  } else if (event.altKey && (event.key === "h" || event.key === "H")) {
    event.preventDefault();
    hangup();
  } else if ((event.ctrlKey || event.metaKey) && (event.key === "s" || event.key === "S")) {
    event.preventDefault();
    saveCase();
  }
}

function onLanguageSwitched() {
  if (desk.acd) showState(desk.acd);
  showPhone();
  showPhoneBadge();
  if (desk.token) {
    loadServices();
    loadTransferTargets();
  }
  renderPop();
  refreshDuplicates();
  showSavedAgain();
  showProblemsAgain();
}

function wire() {
  fillPauseReasons();
  C.translate();
  $("language").addEventListener("click", () => C.setLanguage(C.language() === "pl" ? "en" : "pl"));
  C.onLanguage(onLanguageSwitched);
  $("login-form").addEventListener("submit", submitLogin);
  $("logout").addEventListener("click", logout);
  wireAgentState();
  wirePhone();
  $("case-form").addEventListener("submit", saveCase);
  $("case-form").addEventListener("input", () => {
    saveDraft();
    refreshDuplicates();
  });
  $("case-service").addEventListener("change", async () => {
    await showServiceFields($("case-service").value, {});
    saveDraft();
    refreshDuplicates();
  });
  $("case-clear").addEventListener("click", clearCase);
  document.addEventListener("keydown", onKey);
  setInterval(tick, 1000);
  const saved = session.load();
  if (saved && saved.token) resume(saved);
  else showLogin();
}

try {
  await C.loadTranslations("/static/desk/desk.i18n.json");
} catch (err) {
  console.error("the page's texts did not load", err);
}
wire();
