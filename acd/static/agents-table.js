// The agents table: state, pause reason, time in state, the call, the phone, and the actions.
// Rows are kept (not rebuilt) so a half-chosen pause reason survives the updates.

import * as C from "/static/common/common.js";
import { listen, setState } from "./supervisor-actions.js";
import { groupLabel, seconds } from "./wallboard-format.js";

const agentRows = new Map();

function button(key, className, onClick) {
  return C.element("button", {
    type: "button",
    class: className,
    "data-i18n": key,
    text: C.t(key),
    onclick: onClick,
  });
}

function agentRow(id) {
  let row = agentRows.get(id);
  if (row) return row;
  const select = C.element(
    "select",
    { class: "reason", "aria-label": C.t("action.reason"), "data-i18n-title": "action.reason" },
    C.pauseReasons().map((reason) =>
      C.element("option", { value: reason, "data-i18n": "reason." + reason, text: C.reasonLabel(reason) })
    )
  );
  row = {
    pill: C.element("span", { class: "pill" }),
    reason: C.element("td", { class: "reason-cell" }),
    since: C.element("td", { class: "num since" }),
    call: C.element("td", { class: "call" }),
    phone: C.element("td", { class: "phone" }),
    select,
    ready: button("action.ready", "ready", () => setState(id, "ready")),
    pause: button("action.pause", "pause", () => setState(id, "paused", select.value)),
    listen: button("action.listen", "listen", () => listen(id, "listen")),
    whisper: button("action.whisper", "whisper", () => listen(id, "whisper")),
  };
  row.tr = C.element("tr", { "data-agent": id }, [
    C.element("td", { class: "agent-name", text: id }),
    C.element("td", {}, [row.pill]),
    row.reason,
    row.since,
    row.call,
    row.phone,
    C.element("td", {}, [
      C.element("div", { class: "actions" }, [
        row.ready,
        row.select,
        row.pause,
        row.listen,
        row.whisper,
      ]),
    ]),
  ]);
  agentRows.set(id, row);
  return row;
}

function callText(call) {
  if (!call) return "";
  const parts = [call.language.toUpperCase(), groupLabel(call.group)];
  if (call.callback) parts.push(C.t("call.callback"));
  parts.push(call.talk_seconds === null ? C.t("call.ringing") : seconds(call.talk_seconds));
  return parts.join(" · ");
}

export function renderAgents(agents) {
  const body = C.$("agent-rows");
  C.$("agents-empty").hidden = agents.length > 0;
  const seen = new Set();
  agents.forEach((agent, index) => {
    const row = agentRow(agent.agent_id);
    seen.add(agent.agent_id);
    if (body.children[index] !== row.tr) body.insertBefore(row.tr, body.children[index] || null);
    const state = agent.state;
    row.tr.dataset.state = state;
    const pillText = C.known("state." + state) || state;
    if (row.pill.textContent !== pillText) row.pill.textContent = pillText;
    row.pill.className = "pill st-" + state;
    row.reason.textContent = state === "paused" ? C.reasonLabel(agent.pause_reason) : "";
    row.since.textContent = seconds(agent.for_seconds);
    row.call.textContent = callText(agent.call);
    row.phone.textContent = C.t(agent.reachable ? "phone.ok" : "phone.off");
    row.phone.className = "phone " + (agent.reachable ? "phone-ok" : "phone-off");
    row.phone.title = agent.reachable ? C.t("phone.ok_title") : "";
    row.ready.disabled = !(state === "paused" || state === "wrap_up");
    row.pause.disabled = !(state === "ready" || state === "paused" || state === "wrap_up");
    row.listen.disabled = row.whisper.disabled = state !== "on_call";
  });
  for (const [id, row] of agentRows) {
    if (!seen.has(id)) {
      row.tr.remove();
      agentRows.delete(id);
    }
  }
}

// After a language switch: the reason menus' names (their options carry data-i18n).
export function relabelAgentRows() {
  for (const row of agentRows.values()) row.select.setAttribute("aria-label", C.t("action.reason"));
}

export function clearAgents() {
  agentRows.clear();
  C.$("agent-rows").replaceChildren();
}
