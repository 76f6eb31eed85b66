// What a supervisor does from the board: set an agent ready or paused (with a reason), and
// listen to or whisper into an agent's call (the supervisor's own phone rings for it). The
// outcome shows in a toast.

import * as C from "/static/common/common.js";

let supervisor = { token: () => null, sessionEnded: () => {} };

// The board's session: where the token comes from, and what to do when it has ended.
export function actAs(session) {
  supervisor = session;
}

let toastTimer = null;
export function toast(text, isError) {
  const el = C.$("toast");
  el.textContent = text;
  el.classList.toggle("error", Boolean(isError));
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), isError ? 8000 : 5000);
}

function failed(agent, err) {
  if (err.status === 401) {
    supervisor.sessionEnded();
    return;
  }
  toast(C.t("toast.failed", { agent, error: err.message }), true);
}

export async function setState(agent, state, reason) {
  const body = state === "paused" ? { state, reason } : { state };
  try {
    await C.api("POST", "/api/agents/" + encodeURIComponent(agent) + "/state", {
      token: supervisor.token(),
      body,
    });
    toast(C.t("toast." + state, { agent, reason: C.reasonLabel(reason) }));
  } catch (err) {
    failed(agent, err);
  }
}

export async function listen(agent, mode) {
  try {
    const started = await C.api("POST", "/api/agents/" + encodeURIComponent(agent) + "/listen", {
      token: supervisor.token(),
      body: { mode },
    });
    toast(C.t("toast." + mode, { agent, phone: started.phone }));
  } catch (err) {
    failed(agent, err);
  }
}
