// The agent's desk: log-in, state, the browser softphone (JsSIP over Asterisk's WebSocket
// transport), the screen-pop and the case form. Everything typed is kept in localStorage per
// call, so a reload or a lost connection never loses it.
(function () {
  "use strict";
  const C = window.CityLine;
  const $ = (id) => document.getElementById(id);

  C.addTranslations({
    pl: {
      "desk.title": "Stanowisko konsultanta",
      "desk.logout": "Wyloguj",
      "login.heading": "Zaloguj się",
      "login.name": "Nazwa",
      "login.password": "Hasło",
      "login.submit": "Zaloguj",
      "login.wrong": "Zła nazwa lub hasło.",
      "login.throttled": "Zbyt wiele nieudanych prób. Spróbuj ponownie za {seconds} s.",
      "login.not_agent": "Ta strona jest dla konsultantów. Kierownicy zmiany: /wallboard.",
      "login.expired": "Sesja wygasła albo zalogowano się gdzie indziej. Zaloguj się ponownie.",
      "banner.offline": "Utracono połączenie z serwerem — łączę ponownie… Wpisany tekst jest zachowany.",
      "banner.phone_off": "Telefon w przeglądarce nie jest zarejestrowany — połączenia nie dotrą tutaj.",
      "banner.no_jssip": "Brak biblioteki telefonu (JsSIP). Uruchom scripts/setup.sh na serwerze.",
      "phone.heading": "Telefon",
      "phone.idle": "Brak połączenia",
      "phone.ringing": "Dzwoni: {caller}",
      "phone.talking": "Rozmowa: {caller}",
      "phone.on_hold": "Zawieszone: {caller}",
      "phone.ended": "Rozmowa zakończona",
      "phone.answer": "Odbierz",
      "phone.hangup": "Rozłącz",
      "phone.mute": "Wycisz",
      "phone.unmute": "Włącz mikrofon",
      "phone.hold": "Zawieś",
      "phone.unhold": "Wznów",
      "phone.keypad": "Klawiatura",
      "phone.transfer_to": "Przekaż do",
      "phone.transfer": "Przekaż",
      "phone.transferred": "Przekazano do {target}",
      "phone.transfer_failed": "Nie udało się przekazać rozmowy.",
      "phone.agents": "Konsultanci",
      "phone.departments": "Wydziały",
      "phone.on": "telefon: gotowy",
      "phone.off": "telefon: brak",
      "state.heading": "Mój status",
      "state.ready": "Gotowy",
      "state.pause": "Przerwa",
      "state.logged_out": "Wylogowany",
      "state.ready_text": "Gotowy na połączenia",
      "state.ringing": "Dzwoni",
      "state.on_call": "W rozmowie",
      "state.wrap_up": "Praca po rozmowie",
      "state.wrap_left": "zostało {time}",
      "state.paused": "Przerwa: {reason}",
      "state.unknown": "Nieznany",
      "reason.break": "przerwa",
      "reason.lunch": "lunch",
      "reason.training": "szkolenie",
      "reason.back_office": "praca biurowa",
      "reason.after_call": "praca po rozmowie",
      "pop.heading": "Zgłaszający",
      "pop.empty": "Dane rozmówcy pojawią się, gdy zadzwoni telefon.",
      "pop.caller": "Numer",
      "pop.language": "Język",
      "pop.service": "Sprawa",
      "pop.waited": "Czekał(a)",
      "pop.earlier": "Wcześniejsze zgłoszenia",
      "pop.duplicates": "Otwarte zgłoszenia tej usługi w pobliżu",
      "pop.none": "brak",
      "pop.link": "To ta sama sprawa — powiąż",
      "pop.linked": "Rozmowę powiązano ze zgłoszeniem nr {id}.",
      "pop.missed": "Nieodebrane — rozmowa wróciła do kolejki.",
      "pop.abandoned": "Rozmówca się rozłączył.",
      "pop.unknown_caller": "numer ukryty",
      "pop.transferred_from": "Przekazane przez: {agent}",
      "case.heading": "Zgłoszenie",
      "case.service": "Usługa",
      "case.choose": "— wybierz usługę —",
      "case.description": "Opis",
      "case.address": "Adres",
      "case.lat": "Szer. geogr.",
      "case.lon": "Dł. geogr.",
      "case.fields": "Szczegóły usługi",
      "case.save": "Zapisz zgłoszenie",
      "case.clear": "Wyczyść",
      "case.saved": "Zapisano zgłoszenie nr {id}.",
      "case.recording": "Odsłuchaj nagranie",
      "case.no_recording": "Nagranie będzie dostępne po zakończeniu rozmowy.",
      "case.need_service": "Wybierz usługę.",
      "case.need_description": "Opisz sprawę.",
      "case.need_address": "Ta usługa wymaga adresu albo położenia.",
      "case.bad_location": "Podaj obie współrzędne jako liczby (np. 52.2297 i 21.0122).",
      "case.need_field": "To pole jest wymagane.",
      "case.not_saved": "Nie zapisano: {error}",
      "yes": "tak",
      "no": "nie",
      "lang.pl": "polski",
      "lang.en": "angielski",
      "status.open": "otwarte",
      "status.closed": "zamknięte",
      "group.roads": "Drogi i oświetlenie ulic",
      "group.waste": "Odpady i czystość",
      "group.noise": "Hałas i porządek publiczny",
      "group.other": "Inne sprawy i pytania",
    },
    en: {
      "desk.title": "Agent desk",
      "desk.logout": "Log out",
      "login.heading": "Log in",
      "login.name": "Name",
      "login.password": "Password",
      "login.submit": "Log in",
      "login.wrong": "Wrong name or password.",
      "login.throttled": "Too many failed attempts. Try again in {seconds} s.",
      "login.not_agent": "This page is for agents. Supervisors: /wallboard.",
      "login.expired": "Your session expired or you logged in elsewhere. Please log in again.",
      "banner.offline": "Connection to the server lost — reconnecting… Your typing is kept.",
      "banner.phone_off": "The browser phone is not registered — calls will not reach this desk.",
      "banner.no_jssip": "The phone library (JsSIP) is missing. Run scripts/setup.sh on the server.",
      "phone.heading": "Phone",
      "phone.idle": "No call",
      "phone.ringing": "Ringing: {caller}",
      "phone.talking": "Talking: {caller}",
      "phone.on_hold": "On hold: {caller}",
      "phone.ended": "Call ended",
      "phone.answer": "Answer",
      "phone.hangup": "Hang up",
      "phone.mute": "Mute",
      "phone.unmute": "Unmute",
      "phone.hold": "Hold",
      "phone.unhold": "Resume",
      "phone.keypad": "Keypad",
      "phone.transfer_to": "Transfer to",
      "phone.transfer": "Transfer",
      "phone.transferred": "Transferred to {target}",
      "phone.transfer_failed": "The transfer failed.",
      "phone.agents": "Agents",
      "phone.departments": "Departments",
      "phone.on": "phone: ready",
      "phone.off": "phone: off",
      "state.heading": "My state",
      "state.ready": "Ready",
      "state.pause": "Pause",
      "state.logged_out": "Logged out",
      "state.ready_text": "Ready for calls",
      "state.ringing": "Ringing",
      "state.on_call": "On a call",
      "state.wrap_up": "Wrap-up",
      "state.wrap_left": "{time} left",
      "state.paused": "Paused: {reason}",
      "state.unknown": "Unknown",
      "reason.break": "break",
      "reason.lunch": "lunch",
      "reason.training": "training",
      "reason.back_office": "back office",
      "reason.after_call": "after-call work",
      "pop.heading": "Caller",
      "pop.empty": "The caller's details appear when the phone rings.",
      "pop.caller": "Number",
      "pop.language": "Language",
      "pop.service": "About",
      "pop.waited": "Waited",
      "pop.earlier": "Earlier cases",
      "pop.duplicates": "Open cases of this service nearby",
      "pop.none": "none",
      "pop.link": "Same problem — link",
      "pop.linked": "The call is linked to case {id}.",
      "pop.missed": "Missed — the call went back to the queue.",
      "pop.abandoned": "The caller hung up.",
      "pop.unknown_caller": "withheld",
      "pop.transferred_from": "Transferred by {agent}",
      "case.heading": "Case",
      "case.service": "Service",
      "case.choose": "— choose a service —",
      "case.description": "Description",
      "case.address": "Address",
      "case.lat": "Latitude",
      "case.lon": "Longitude",
      "case.fields": "Service details",
      "case.save": "Save case",
      "case.clear": "Clear",
      "case.saved": "Case {id} saved.",
      "case.recording": "Play the recording",
      "case.no_recording": "The recording is available once the call has ended.",
      "case.need_service": "Choose a service.",
      "case.need_description": "Describe the problem.",
      "case.need_address": "This service needs an address or a location.",
      "case.bad_location": "Give both coordinates as numbers (e.g. 52.2297 and 21.0122).",
      "case.need_field": "This field is required.",
      "case.not_saved": "Not saved: {error}",
      "yes": "yes",
      "no": "no",
      "lang.pl": "Polish",
      "lang.en": "English",
      "status.open": "open",
      "status.closed": "closed",
      "group.roads": "Roads and street lighting",
      "group.waste": "Waste and cleanliness",
      "group.noise": "Noise and public order",
      "group.other": "Other questions",
    },
  });

  const session = C.savedSession("desk");
  const desk = {
    token: null,
    agent: null,
    sip: null,
    acd: null,
    pop: null,
    socket: null,
    ua: null,
    call: null,
    callCaller: "",
    callStartedAt: null,
    services: [],
    definitions: {},
    lastSavedCase: null,
  };
  // Timing marks for tests and benchmarks: when the phone rang and when the pop was shown.
  const marks = [];
  window.cityDesk = { marks, state: desk };

  // -- drafts: what the agent typed, per call, kept across reloads and reconnects ----------------
  const DRAFT_PREFIX = "cityline.desk.draft.";
  const POP_KEY = "cityline.desk.pop";
  const draftKey = () => DRAFT_PREFIX + (desk.pop ? desk.pop.call_id : "no-call");
  function saveDraft() {
    localStorage.setItem(draftKey(), JSON.stringify(readForm()));
  }
  function loadDraft() {
    try {
      return JSON.parse(localStorage.getItem(draftKey()) || "null");
    } catch (err) {
      return null;
    }
  }
  function dropDraft() {
    localStorage.removeItem(draftKey());
  }

  // -- banner ----------------------------------------------------------------------------------
  const problems = new Map(); // what is wrong now, by source; the worst is shown
  function setProblem(source, key, kind) {
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

  // -- log-in ----------------------------------------------------------------------------------
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
      session.save(result);
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
    if (desk.ua) desk.ua.stop();
    desk.socket = null;
    desk.ua = null;
    problems.clear();
    setProblem("socket", null);
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
    } else if (message.type === "error") {
      console.warn("server refused a desk message:", message.error);
    }
  }

  // -- agent state -----------------------------------------------------------------------------
  function showState(acd) {
    desk.acd = acd || { state: "unknown" };
    const state = desk.acd.state;
    const badge = $("state-badge");
    badge.dataset.state = state;
    badge.textContent = stateText();
    $("state-text").textContent = stateText();
    $("ready").disabled = state === "ready" || state === "on_call" || state === "ringing";
    $("pause").disabled = state === "on_call" || state === "ringing";
    tick();
  }

  function stateText() {
    const acd = desk.acd || {};
    switch (acd.state) {
      case "ready":
        return C.t("state.ready_text");
      case "paused":
        return C.t("state.paused", { reason: reasonText(acd.pause_reason) });
      case "ringing":
      case "on_call":
      case "wrap_up":
      case "logged_out":
        return C.t("state." + acd.state);
      default:
        return C.t("state.unknown");
    }
  }

  function reasonText(reason) {
    const keys = {
      break: "reason.break",
      lunch: "reason.lunch",
      training: "reason.training",
      "back office": "reason.back_office",
      "after-call work": "reason.after_call",
    };
    return keys[reason] ? C.t(keys[reason]) : reason || "";
  }

  async function changeState(state, reason) {
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

  // -- the softphone ---------------------------------------------------------------------------
  function startPhone() {
    if (!window.JsSIP) {
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
    ua.on("newRTCSession", (event) => {
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
    });
    phoneOff();
    ua.start();
    desk.ua = ua;
  }

  function showPhoneBadge() {
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

  function showPhone(idleText) {
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
    tick();
  }

  function answer() {
    if (!desk.call || desk.call.isEstablished()) return;
    desk.call.answer({
      mediaConstraints: { audio: true, video: false },
      pcConfig: { iceServers: [] },
    });
  }

  function hangup() {
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

  async function loadTransferTargets() {
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
        const name = d.names[C.language] || d.names.en || d.code;
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

  // -- the screen-pop --------------------------------------------------------------------------
  function restorePop() {
    try {
      const pop = JSON.parse(localStorage.getItem(POP_KEY) || "null");
      if (pop) showPop(pop, false);
      else fillForm(loadDraft() || {});
    } catch (err) {
      localStorage.removeItem(POP_KEY);
    }
  }

  function showPop(pop, fresh) {
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
  function renderPop() {
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
      const when = c.created_at ? new Date(c.created_at).toLocaleDateString(C.language) : "";
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

  function onCallUpdate(message) {
    if (!desk.pop || desk.pop.call_id !== message.call_id) return;
    if (message.status === "missed") $("case-saved").textContent = C.t("pop.missed");
    if (message.status === "abandoned") $("case-saved").textContent = C.t("pop.abandoned");
  }

  // -- the case form ---------------------------------------------------------------------------
  async function loadServices() {
    try {
      desk.services = await C.api("GET", "/open311/v2/services.json?lang=" + C.language);
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

  function serviceName(code) {
    const service = desk.services.find((s) => s.service_code === code);
    return service ? service.service_name : code;
  }

  async function definition(code) {
    const key = code + ":" + C.language;
    if (!desk.definitions[key]) {
      desk.definitions[key] = await C.api("GET", "/open311/v2/services/" + encodeURIComponent(code) + ".json?lang=" + C.language);
    }
    return desk.definitions[key];
  }

  async function showServiceFields(code, values) {
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

  function readForm() {
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

  function fillForm(values) {
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

  async function saveCase(event) {
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

  async function playRecording(callId) {
    const response = await fetch("/api/calls/" + callId + "/recording", {
      headers: { Authorization: "Bearer " + desk.token },
    });
    if (!response.ok) {
      $("case-error").textContent = C.t("case.no_recording");
      return;
    }
    const audio = C.element("audio", { controls: "", src: URL.createObjectURL(await response.blob()) });
    $("case-saved").append(audio);
    audio.play().catch(() => {});
  }

  function clearCase() {
    dropDraft();
    fillForm({});
  }

  let duplicateTimer = null;
  function refreshDuplicates() {
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

  // -- clocks ----------------------------------------------------------------------------------
  function tick() {
    $("call-timer").textContent =
      desk.callStartedAt && desk.call ? C.formatSeconds((Date.now() - desk.callStartedAt) / 1000) : "";
    const acd = desk.acd || {};
    let timer = "";
    if (acd.state === "wrap_up" && acd.wrap_until) {
      timer = C.t("state.wrap_left", { time: C.formatSeconds(acd.wrap_until - Date.now() / 1000) });
    } else if (acd.since) {
      timer = C.formatSeconds(Date.now() / 1000 - acd.since);
    }
    $("state-timer").textContent = timer;
  }

  // -- wiring ----------------------------------------------------------------------------------
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

  function wire() {
    C.translate();
    $("language").addEventListener("click", () => C.setLanguage(C.language === "pl" ? "en" : "pl"));
    C.onLanguage(() => {
      if (desk.acd) showState(desk.acd);
      showPhone();
      showPhoneBadge();
      if (desk.token) {
        loadServices();
        loadTransferTargets();
      }
      renderPop();
      refreshDuplicates();
      if (desk.lastSavedCase && $("case-saved").dataset.caseId) showSaved(desk.lastSavedCase);
      for (const [source, problem] of problems) setProblem(source, problem.key, problem.kind);
    });
    $("login-form").addEventListener("submit", submitLogin);
    $("logout").addEventListener("click", logout);
    $("ready").addEventListener("click", () => changeState("ready"));
    $("pause").addEventListener("click", () => changeState("paused", $("pause-reason").value));
    $("answer").addEventListener("click", answer);
    $("hangup").addEventListener("click", hangup);
    $("mute").addEventListener("click", toggleMute);
    $("hold").addEventListener("click", toggleHold);
    $("keypad-toggle").addEventListener("click", () => ($("keypad").hidden = !$("keypad").hidden));
    $("keypad").querySelectorAll("button").forEach((b) => b.addEventListener("click", () => sendKey(b.textContent)));
    $("transfer").addEventListener("click", transfer);
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
    if (saved && saved.token) start(saved);
    else showLogin();
  }

  wire();
})();
