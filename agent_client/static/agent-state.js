// The agent's own ACD state: the badge, the state line with its timer, Ready and Pause (with a
// reason from the shared list).

import * as C from "/static/common/common.js";
import { setProblem } from "./desk-banner.js";
import { desk } from "./desk-state.js";

const { $ } = C;

export function fillPauseReasons() {
  $("pause-reason").replaceChildren(
    ...C.pauseReasons().map((reason) =>
      C.element("option", { value: reason, "data-i18n": "reason." + reason, text: C.reasonLabel(reason) })
    )
  );
}

export function showState(acd) {
  desk.acd = acd || { state: "unknown" };
  const state = desk.acd.state;
  const badge = $("state-badge");
  badge.dataset.state = state;
  badge.textContent = stateText();
  $("state-text").textContent = stateText();
  $("ready").disabled = state === "ready" || state === "on_call" || state === "ringing";
  $("pause").disabled = state === "on_call" || state === "ringing";
  showStateTimer();
}

function stateText() {
  const acd = desk.acd || {};
  switch (acd.state) {
    case "ready":
      return C.t("state.ready_text");
    case "paused":
      return C.t("state.paused", { reason: C.reasonLabel(acd.pause_reason) });
    case "ringing":
    case "on_call":
    case "wrap_up":
    case "logged_out":
      return C.t("state." + acd.state);
    default:
      return C.t("state.unknown");
  }
}

export async function changeState(state, reason) {
  try {
    const view = await C.api("POST", "/api/me/state", {
      token: desk.token,
      body: reason ? { state, reason } : { state },
    });
    showState(view);
  } catch (err) {
    setProblem("state", null);
    $("state-text").textContent = err.message;
  }
}

// Time in the state, or what is left of the wrap-up.
export function showStateTimer() {
  const acd = desk.acd || {};
  let timer = "";
  if (acd.state === "wrap_up" && acd.wrap_until) {
    timer = C.t("state.wrap_left", { time: C.formatSeconds(acd.wrap_until - Date.now() / 1000) });
  } else if (acd.since) {
    timer = C.formatSeconds(Date.now() / 1000 - acd.since);
  }
  $("state-timer").textContent = timer;
}

export function wireAgentState() {
  $("ready").addEventListener("click", () => changeState("ready"));
  $("pause").addEventListener("click", () => changeState("paused", $("pause-reason").value));
}
