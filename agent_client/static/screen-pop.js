// The screen-pop: who is calling and what the IVR learnt (language, service, what was said),
// the caller's earlier cases and open cases of the same service nearby, which the agent can
// link the call to. The pop is kept in localStorage, so a reload shows it again.

import * as C from "/static/common/common.js";
import { dropDraft, fillForm, loadDraft, readForm, saveDraft, serviceName } from "./case-form.js";
import { desk } from "./desk-state.js";
import { showPhone } from "./softphone.js";

const { $ } = C;
const POP_KEY = "cityline.desk.pop";

export function restorePop() {
  try {
    const pop = JSON.parse(localStorage.getItem(POP_KEY) || "null");
    if (pop) showPop(pop, false);
    else fillForm(loadDraft() || {});
  } catch (err) {
    localStorage.removeItem(POP_KEY);
  }
}

export function showPop(pop, fresh) {
  const previous = desk.pop;
  if (fresh && previous && previous.call_id !== pop.call_id) saveDraft();
  desk.pop = pop;
  localStorage.setItem(POP_KEY, JSON.stringify(pop));
  renderPop();
  $("case-saved").replaceChildren();
  // A fresh call starts from what the IVR heard, unless the agent already typed for it.
  const draft = loadDraft();
  if (draft) fillForm(draft);
  else fillForm(Object.assign({}, pop.case_draft || {}));
  showPhone();
}

// The pop's facts in the page's language; the form and what was typed are left alone.
export function renderPop() {
  const pop = desk.pop;
  if (!pop) return;
  $("pop-empty").hidden = true;
  $("pop-body").hidden = false;
  $("pop-caller").textContent = pop.caller_number || C.t("pop.unknown_caller");
  $("pop-language").textContent = C.t("lang." + pop.language);
  $("pop-service").textContent = pop.service_name || pop.service_group_name || pop.service_group || "—";
  $("pop-transferred").hidden = !pop.transferred_from;
  $("pop-transferred").textContent = pop.transferred_from
    ? C.t("pop.transferred_from", { agent: pop.transferred_from })
    : "";
  $("pop-waited").textContent = C.formatSeconds(pop.waited_seconds);
  const transcript = $("pop-transcript");
  transcript.hidden = !pop.transcript;
  transcript.textContent = pop.transcript ? "„" + pop.transcript + "”" : "";
  renderCases($("pop-earlier"), pop.earlier_cases || [], false);
  renderCases($("pop-duplicates"), pop.possible_duplicates || [], true);
}

function renderCases(list, cases, offerLink) {
  list.replaceChildren();
  if (!cases.length) {
    list.append(C.element("li", { class: "empty", text: C.t("pop.none") }));
    return;
  }
  for (const c of cases) {
    const service = serviceName(c.service_code) || c.service_group;
    const when = c.created_at ? new Date(c.created_at).toLocaleDateString(C.language()) : "";
    const item = C.element("li", { "data-case": c.id }, [
      C.element("span", { text: "#" + c.id + " " + service + (c.address ? " — " + c.address : "") }),
      C.element("span", {}, [
        C.element("span", { class: "status", "data-status": c.status, text: C.t("status." + c.status) }),
        " " + when,
      ]),
    ]);
    if (offerLink && desk.pop) {
      item.append(C.element("button", { type: "button", class: "secondary", text: C.t("pop.link"),
        onclick: () => linkToCase(c.id) }));
    }
    list.append(item);
  }
}

async function linkToCase(caseId) {
  if (!desk.pop) return;
  try {
    await C.api("POST", "/api/cases/" + caseId + "/calls", {
      token: desk.token,
      body: { call_id: desk.pop.call_id },
    });
    dropDraft();
    $("case-saved").textContent = C.t("pop.linked", { id: caseId });
  } catch (err) {
    $("case-error").textContent = C.t("case.not_saved", { error: err.message });
  }
}

// The call of the pop was missed or the caller hung up before an answer.
export function onCallUpdate(message) {
  if (!desk.pop || desk.pop.call_id !== message.call_id) return;
  if (message.status === "missed") $("case-saved").textContent = C.t("pop.missed");
  if (message.status === "abandoned") $("case-saved").textContent = C.t("pop.abandoned");
}

// Open cases near what the form says now (asked a moment after the typing stops).
let duplicateTimer = null;
export function refreshDuplicates() {
  clearTimeout(duplicateTimer);
  duplicateTimer = setTimeout(async () => {
    const values = readForm();
    if (!values.service_code || !desk.pop) return;
    const query = new URLSearchParams({ service_code: values.service_code, address: values.address });
    if (values.lat && values.lon) {
      query.set("lat", values.lat.replace(",", "."));
      query.set("lon", values.lon.replace(",", "."));
    }
    try {
      const found = await C.api("GET", "/api/cases/nearby?" + query, { token: desk.token });
      renderCases($("pop-duplicates"), found, true);
    } catch (err) {
      console.warn("nearby cases", err);
    }
  }, 600);
}
