// The browser softphone: JsSIP (a classic script, window.JsSIP) registers over Asterisk's
// WebSocket transport. Answer, hang up, mute, hold, the keypad and blind transfer.

import * as C from "/static/common/common.js";
import { setProblem } from "./desk-banner.js";
import { desk, marks } from "./desk-state.js";

const { $ } = C;

export function startPhone() {
  const JsSIP = window.JsSIP;
  if (!JsSIP) {
    setProblem("library", "banner.no_jssip", "error");
    return;
  }
  const sip = desk.sip;
  if (!sip || !sip.ws_url) return;
  const socket = new JsSIP.WebSocketInterface(sip.ws_url);
  const ua = new JsSIP.UA({
    sockets: [socket],
    uri: "sip:" + sip.web_username + "@" + sip.server,
    authorization_user: sip.web_username,
    password: sip.password,
    display_name: desk.agent.display_name || desk.agent.name,
    register: true,
    register_expires: 120,
    session_timers: false,
    user_agent: "CityLine desk",
  });
  ua.on("registered", () => {
    $("phone-badge").dataset.phone = "on";
    showPhoneBadge();
    setProblem("phone", null);
  });
  const phoneOff = () => {
    $("phone-badge").dataset.phone = "off";
    showPhoneBadge();
    setProblem("phone", "banner.phone_off");
  };
  ua.on("unregistered", phoneOff);
  ua.on("registrationFailed", phoneOff);
  ua.on("disconnected", phoneOff);
  ua.on("newRTCSession", onIncoming);
  phoneOff();
  ua.start();
  desk.ua = ua;
}

export function stopPhone() {
  if (desk.ua) desk.ua.stop();
  desk.ua = null;
}

function onIncoming(event) {
  if (event.originator !== "remote") return;
  const call = event.session;
  if (desk.call) {
    call.terminate({ status_code: 486, reason_phrase: "Busy Here" });
    return;
  }
  marks.push({ kind: "ring", at: performance.now(), wall: Date.now() });
  desk.call = call;
  desk.callCaller = (call.remote_identity && call.remote_identity.uri.user) || "";
  call.on("peerconnection", (e) => attachAudio(e.peerconnection));
  call.on("confirmed", () => {
    desk.callStartedAt = Date.now();
    showPhone();
  });
  call.on("hold", showPhone);
  call.on("unhold", showPhone);
  call.on("muted", showPhone);
  call.on("unmuted", showPhone);
  const ended = () => {
    if (desk.call === call) {
      desk.call = null;
      desk.callStartedAt = null;
      $("keypad").hidden = true;
      showPhone(C.t("phone.ended"));
    }
  };
  call.on("ended", ended);
  call.on("failed", ended);
  showPhone();
}

export function showPhoneBadge() {
  const badge = $("phone-badge");
  badge.textContent = C.t(badge.dataset.phone === "on" ? "phone.on" : "phone.off");
}

function attachAudio(peerconnection) {
  peerconnection.addEventListener("track", (event) => {
    const audio = $("remote-audio");
    if (event.streams && event.streams[0]) audio.srcObject = event.streams[0];
  });
}

function callerLabel() {
  return (desk.pop && desk.pop.caller_number) || desk.callCaller || C.t("pop.unknown_caller");
}

export function showPhone(idleText) {
  const call = desk.call;
  const status = $("call-status");
  const inCall = Boolean(call && call.isEstablished());
  const ringing = Boolean(call && !inCall && call.direction === "incoming" && !call.isEnded());
  status.dataset.ringing = String(ringing);
  if (ringing) status.textContent = C.t("phone.ringing", { caller: callerLabel() });
  else if (inCall && call.isOnHold().local) status.textContent = C.t("phone.on_hold", { caller: callerLabel() });
  else if (inCall) status.textContent = C.t("phone.talking", { caller: callerLabel() });
  else status.textContent = typeof idleText === "string" ? idleText : C.t("phone.idle");
  $("answer").disabled = !ringing;
  $("hangup").disabled = !(ringing || inCall);
  for (const id of ["mute", "hold", "keypad-toggle", "transfer", "transfer-target"]) {
    $(id).disabled = !inCall;
  }
  const muted = inCall && call.isMuted().audio;
  const held = inCall && call.isOnHold().local;
  $("mute").textContent = C.t(muted ? "phone.unmute" : "phone.mute");
  $("mute").setAttribute("aria-pressed", String(muted));
  $("hold").textContent = C.t(held ? "phone.unhold" : "phone.hold");
  $("hold").setAttribute("aria-pressed", String(held));
  showCallTimer();
}

export function showCallTimer() {
  $("call-timer").textContent =
    desk.callStartedAt && desk.call ? C.formatSeconds((Date.now() - desk.callStartedAt) / 1000) : "";
}

export function answer() {
  if (!desk.call || desk.call.isEstablished()) return;
  desk.call.answer({
    mediaConstraints: { audio: true, video: false },
    pcConfig: { iceServers: [] },
  });
}

export function hangup() {
  if (desk.call) desk.call.terminate();
}

function toggleMute() {
  if (!desk.call) return;
  if (desk.call.isMuted().audio) desk.call.unmute({ audio: true });
  else desk.call.mute({ audio: true });
}

function toggleHold() {
  if (!desk.call) return;
  if (desk.call.isOnHold().local) desk.call.unhold();
  else desk.call.hold();
}

function sendKey(key) {
  if (desk.call && desk.call.isEstablished()) {
    desk.call.sendDTMF(key, { transportType: "RFC2833" });
  }
}

export async function loadTransferTargets() {
  const select = $("transfer-target");
  try {
    const targets = await C.api("GET", "/api/transfer-targets", { token: desk.token });
    select.replaceChildren();
    const agents = C.element("optgroup", { label: C.t("phone.agents") });
    for (const a of targets.agents) {
      agents.append(C.element("option", { value: a.extension, text: a.display_name || a.name }));
    }
    const departments = C.element("optgroup", { label: C.t("phone.departments") });
    for (const d of targets.departments) {
      const name = d.names[C.language()] || d.names.en || d.code;
      departments.append(C.element("option", { value: d.extension, text: name + " (" + d.extension + ")" }));
    }
    if (agents.children.length) select.append(agents);
    select.append(departments);
  } catch (err) {
    console.warn("transfer targets", err);
  }
}

function transfer() {
  const target = $("transfer-target").value;
  if (!desk.call || !target) return;
  const label = $("transfer-target").selectedOptions[0].textContent;
  const call = desk.call;
  call.refer("sip:" + target + "@" + desk.sip.server, {
    eventHandlers: {
      // The caller is with the target now: this leg is ours to end (a blind transfer).
      accepted: () => {
        if (!call.isEnded()) call.terminate();
        showPhone(C.t("phone.transferred", { target: label }));
      },
      failed: () => showPhone(C.t("phone.transfer_failed")),
    },
  });
}

export function wirePhone() {
  $("answer").addEventListener("click", answer);
  $("hangup").addEventListener("click", hangup);
  $("mute").addEventListener("click", toggleMute);
  $("hold").addEventListener("click", toggleHold);
  $("keypad-toggle").addEventListener("click", () => ($("keypad").hidden = !$("keypad").hidden));
  $("keypad").querySelectorAll("button").forEach((b) => b.addEventListener("click", () => sendKey(b.textContent)));
  $("transfer").addEventListener("click", transfer);
}
