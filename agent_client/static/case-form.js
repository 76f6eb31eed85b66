// The case form: the service catalogue (Open311), each service's own fields, the checks the
// server applies, saving the case, and the draft of what was typed, kept in localStorage per
// call so a reload or a lost connection never loses it.

import * as C from "/static/common/common.js";
import { desk } from "./desk-state.js";

const { $ } = C;

// -- drafts: what the agent typed, per call, kept across reloads and reconnects ----------------
const DRAFT_PREFIX = "cityline.desk.draft.";
const draftKey = () => DRAFT_PREFIX + (desk.pop ? desk.pop.call_id : "no-call");

export function saveDraft() {
  localStorage.setItem(draftKey(), JSON.stringify(readForm()));
}

export function loadDraft() {
  try {
    return JSON.parse(localStorage.getItem(draftKey()) || "null");
  } catch (err) {
    return null;
  }
}

export function dropDraft() {
  localStorage.removeItem(draftKey());
}

// -- the services ----------------------------------------------------------------------------
export async function loadServices() {
  try {
    desk.services = await C.api("GET", "/open311/v2/services.json?lang=" + C.language());
  } catch (err) {
    console.warn("services", err);
    return;
  }
  const select = $("case-service");
  const typed = readForm(); // a language switch must not lose what is in the form
  const draft = loadDraft() || {};
  const chosen = select.value || draft.service_code || "";
  select.replaceChildren(C.element("option", { value: "", text: C.t("case.choose") }));
  const groups = new Map();
  // The group the IVR found comes first: its services are the likely ones.
  const heard = desk.pop && desk.pop.service_group;
  const ordered = desk.services.slice().sort((a, b) => (b.group === heard) - (a.group === heard));
  for (const service of ordered) {
    if (!groups.has(service.group)) {
      const label = C.t("group." + service.group);
      groups.set(service.group, C.element("optgroup", { label: label.startsWith("group.") ? service.group : label }));
    }
    groups.get(service.group).append(C.element("option", { value: service.service_code, text: service.service_name }));
  }
  groups.forEach((group) => select.append(group));
  select.value = chosen;
  const attributes = Object.keys(typed.attributes).length ? typed.attributes : draft.attributes;
  await showServiceFields(select.value, attributes || {});
}

export function serviceName(code) {
  const service = desk.services.find((s) => s.service_code === code);
  return service ? service.service_name : code;
}

async function definition(code) {
  const key = code + ":" + C.language();
  if (!desk.definitions[key]) {
    desk.definitions[key] = await C.api("GET", "/open311/v2/services/" + encodeURIComponent(code) + ".json?lang=" + C.language());
  }
  return desk.definitions[key];
}

export async function showServiceFields(code, values) {
  const box = $("case-fields");
  box.querySelectorAll(".field").forEach((el) => el.remove());
  box.hidden = true;
  if (!code) return;
  let def;
  try {
    def = await definition(code);
  } catch (err) {
    return;
  }
  for (const attribute of def.attributes || []) {
    if (!attribute.variable) continue;
    const id = "attr-" + attribute.code;
    let input;
    if (attribute.values) {
      input = C.element("select", { id, "data-attribute": attribute.code },
        [C.element("option", { value: "", text: "—" })].concat(
          attribute.values.map((v) => C.element("option", { value: v.key, text: v.name }))));
    } else {
      input = C.element("input", { id, "data-attribute": attribute.code, maxlength: "500" });
    }
    if (attribute.required) input.setAttribute("data-required", "true");
    input.value = (values || {})[attribute.code] || "";
    input.addEventListener("input", saveDraft);
    input.addEventListener("change", saveDraft);
    box.append(C.element("label", { class: "field", for: id }, [
      C.element("span", { text: attribute.description + (attribute.required ? " *" : "") }),
      input,
    ]));
  }
  box.hidden = !box.querySelector(".field");
}

// -- the form's values -----------------------------------------------------------------------
export function readForm() {
  const attributes = {};
  $("case-fields").querySelectorAll("[data-attribute]").forEach((el) => {
    if (el.value) attributes[el.dataset.attribute] = el.value;
  });
  return {
    service_code: $("case-service").value,
    description: $("case-description").value,
    address: $("case-address").value,
    lat: $("case-lat").value,
    lon: $("case-lon").value,
    attributes,
  };
}

export function fillForm(values) {
  $("case-service").value = values.service_code || "";
  $("case-description").value = values.description || "";
  $("case-address").value = values.address || "";
  $("case-lat").value = values.lat || "";
  $("case-lon").value = values.lon || "";
  $("case-error").textContent = "";
  clearInvalid();
  showServiceFields($("case-service").value, values.attributes || {});
}

function clearInvalid() {
  document.querySelectorAll("#case-form [aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
}

function invalid(el, key) {
  el.setAttribute("aria-invalid", "true");
  return C.t(key);
}

// The same rules the server applies, checked before sending so the agent sees them at once.
function validate(values) {
  clearInvalid();
  const errors = [];
  if (!values.service_code) errors.push(invalid($("case-service"), "case.need_service"));
  if (!values.description.trim()) errors.push(invalid($("case-description"), "case.need_description"));
  const hasLat = values.lat.trim() !== "";
  const hasLon = values.lon.trim() !== "";
  if (hasLat || hasLon) {
    const lat = Number(values.lat.replace(",", "."));
    const lon = Number(values.lon.replace(",", "."));
    if (!hasLat || !hasLon || !Number.isFinite(lat) || !Number.isFinite(lon) || Math.abs(lat) > 90 || Math.abs(lon) > 180) {
      errors.push(invalid($("case-lat"), "case.bad_location"));
      $("case-lon").setAttribute("aria-invalid", "true");
    }
  }
  $("case-fields").querySelectorAll("[data-required]").forEach((el) => {
    if (!el.value) errors.push(invalid(el, "case.need_field"));
  });
  return errors;
}

// -- saving ----------------------------------------------------------------------------------
export async function saveCase(event) {
  if (event) event.preventDefault();
  const values = readForm();
  const errors = validate(values);
  $("case-error").textContent = errors.join(" ");
  if (errors.length) return;
  const body = {
    service_code: values.service_code,
    description: values.description.trim(),
    address: values.address.trim(),
    attributes: values.attributes,
  };
  if (values.lat.trim()) {
    body.lat = Number(values.lat.replace(",", "."));
    body.lon = Number(values.lon.replace(",", "."));
  }
  if (desk.pop) body.call_id = desk.pop.call_id;
  $("case-save").disabled = true;
  try {
    const saved = await C.api("POST", "/api/cases", { token: desk.token, body });
    desk.lastSavedCase = saved;
    dropDraft();
    showSaved(saved);
  } catch (err) {
    if (err.status === 422 && /address/.test(err.message)) invalid($("case-address"), "case.need_address");
    $("case-error").textContent = C.t("case.not_saved", { error: err.message });
  } finally {
    $("case-save").disabled = false;
  }
}

function showSaved(saved) {
  const line = $("case-saved");
  line.replaceChildren(C.t("case.saved", { id: saved.id }) + " ");
  line.dataset.caseId = saved.id;
  if (saved.call_id) {
    line.append(C.element("button", { type: "button", class: "link", text: C.t("case.recording"),
      onclick: () => playRecording(saved.call_id) }));
  }
}

// After a language switch: the saved-case line in the new language.
export function showSavedAgain() {
  if (desk.lastSavedCase && $("case-saved").dataset.caseId) showSaved(desk.lastSavedCase);
}

// The recording is fetched with the session's token (never put in a URL) and played from memory,
// so seeking needs nothing more from the server; the server says what format it is (Opus in Ogg).
let recordingUrl = null;

async function playRecording(callId) {
  const response = await fetch("/api/calls/" + callId + "/recording", {
    headers: { Authorization: "Bearer " + desk.token },
  });
  if (!response.ok) {
    // 410: deleted (its retention period ended, or on request); else not stored yet.
    $("case-error").textContent = C.t(response.status === 410 ? "case.recording_deleted" : "case.no_recording");
    return;
  }
  if (recordingUrl) URL.revokeObjectURL(recordingUrl);
  recordingUrl = URL.createObjectURL(await response.blob());
  let audio = $("case-saved").querySelector("audio");
  if (!audio) {
    audio = C.element("audio", { controls: "", id: "case-recording" });
    $("case-saved").append(audio);
  }
  audio.src = recordingUrl;
  audio.play().catch(() => {});
}

export function clearCase() {
  dropDraft();
  fillForm({});
}
