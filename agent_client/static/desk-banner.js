// The banner over the desk: what is wrong now (the server connection, the phone library, the
// phone's registration), by source; the worst one is shown.

import * as C from "/static/common/common.js";

const { $ } = C;
const problems = new Map();

export function setProblem(source, key, kind) {
  if (key) problems.set(source, { key, kind: kind || "warning" });
  else problems.delete(source);
  const banner = $("banner");
  const shown = problems.get("socket") || problems.get("library") || problems.get("phone");
  banner.hidden = !shown;
  if (shown) {
    banner.textContent = C.t(shown.key);
    banner.dataset.kind = shown.kind;
    banner.dataset.problem = shown.key;
  }
}

export function clearProblems() {
  problems.clear();
  setProblem("socket", null);
}

// After a language switch: the same problems in the new language.
export function showProblemsAgain() {
  for (const [source, problem] of problems) setProblem(source, problem.key, problem.kind);
}
