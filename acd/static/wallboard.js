// The supervisors' wallboard: a supervisor logs in, then the board is fed by /ws/wallboard
// alone (one computed state pushed by the service; nothing here polls). The service rates the
// figures against the target (board.*.rating), so this page only lays them out.
(function () {
  "use strict";

  const C = window.CityLine;
  const $ = (id) => document.getElementById(id);
  const session = C.savedSession("wallboard");

  const STATES = ["ready", "ringing", "on_call", "wrap_up", "paused", "logged_out"];
  const PAUSE_REASONS = ["break", "meeting", "training", "coaching", "technical"];
  const RATING_MARK = { good: "✓", warn: "!", bad: "✗", none: "" };
  // Updates come at least every second: after this long without one the figures are old.
  const STALE_AFTER_MS = 5000;

  C.addTranslations({
    pl: {
      title: "Tablica nadzoru",
      logout: "Wyloguj",
      "link.connecting": "Łączenie…",
      "link.online": "Na żywo",
      "link.offline": "Brak połączenia",
      "banner.offline": "Utracono połączenie z serwerem — trwa ponowne łączenie…",
      "banner.stale": "Brak nowych danych od {seconds} s — dane mogą być nieaktualne",
      "login.title": "Tablica nadzoru",
      "login.hint": "Zaloguj się kontem kierownika zmiany.",
      "login.name": "Nazwa użytkownika",
      "login.password": "Hasło",
      "login.submit": "Zaloguj",
      "login.missing": "Podaj nazwę i hasło.",
      "login.wrong": "Nieprawidłowa nazwa lub hasło.",
      "login.supervisors_only":
        "Tablica jest tylko dla kierowników zmiany. Konto konsultanta nie ma do niej dostępu.",
      "login.expired": "Sesja wygasła lub została zamknięta. Zaloguj się ponownie.",
      "login.throttled": "Zbyt wiele prób logowania. Spróbuj ponownie za chwilę.",
      target: "Cel: {percent}% w {seconds} s",
      "tile.waiting": "Oczekujące połączenia",
      "tile.longest": "Najdłuższe oczekiwanie",
      "tile.sl_15min": "Poziom obsługi · 15 min",
      "tile.sl_1h": "Poziom obsługi · 1 godz.",
      "tile.sl_today": "Poziom obsługi · dziś",
      "tile.asa": "Średni czas odbioru · 1 godz.",
      "tile.p90": "Czas odbioru p90 · 1 godz.",
      "tile.abandon": "Porzucone · 1 godz.",
      "tile.callbacks": "Oddzwonienia w kolejce",
      "tile.occupancy": "Obciążenie · 15 min",
      "tile.staffing": "Obsada: są / potrzeba",
      "sub.offered": "dziś przyjęte: {offered}",
      "sub.target": "cel: {seconds} s",
      "sub.sl": "{answered} odebranych · {rating}",
      "sub.today": "dziś: {value}",
      "sub.callbacks": "dziś zamówione: {requested}",
      "rating.good": "w normie",
      "rating.warn": "zagrożony",
      "rating.bad": "poniżej celu",
      "rating.none": "brak danych",
      "staffing.short": "brakuje {gap} (Erlang C, {window})",
      "staffing.enough": "obsada wystarczająca ({window})",
      "staffing.unknown": "za mało danych",
      "staffing.language": "{language}: {have} / {need}",
      "staffing.language_short": "{language}: {have} / {need}, brakuje {gap}",
      "window.15min": "15 min",
      "window.1h": "1 godz.",
      "agents.title": "Konsultanci",
      "agents.unreachable": "telefon niedostępny",
      "agents.pauses": "Przerwy:",
      "strip.ready": "gotowi",
      "strip.ringing": "dzwoni",
      "strip.on_call": "rozmawiają",
      "strip.wrap_up": "po rozmowie",
      "strip.paused": "przerwa",
      "strip.logged_out": "wylogowani",
      "state.ready": "Gotowy",
      "state.ringing": "Dzwoni",
      "state.on_call": "Rozmowa",
      "state.wrap_up": "Po rozmowie",
      "state.paused": "Przerwa",
      "state.logged_out": "Wylogowany",
      "state.unknown": "?",
      "reason.login": "po zalogowaniu",
      "reason.no answer": "nie odebrał",
      "reason.unreachable": "telefon niedostępny",
      "reason.not ready": "niegotowy",
      "reason.break": "przerwa",
      "reason.lunch": "posiłek",
      "reason.meeting": "spotkanie",
      "reason.training": "szkolenie",
      "reason.coaching": "coaching",
      "reason.technical": "problem techniczny",
      "chart.title": "Poziom obsługi i kolejka w ciągu dnia",
      "chart.time": "Godzina",
      "chart.sl_15min": "SL 15 min",
      "chart.sl_today": "SL dziś",
      "chart.target": "Cel",
      "chart.waiting": "Oczekujące",
      "chart.missing": "Wykres niedostępny: brak biblioteki uPlot (uruchom scripts/setup.sh).",
      "queues.title": "Kolejki: język i grupa spraw",
      "queues.queue": "Kolejka",
      "queues.waiting": "Czeka",
      "queues.longest": "Najdłużej",
      "queues.sl_15min": "SL 15 min",
      "queues.sl_today": "SL dziś",
      "queues.offered": "Przyjęte",
      "queues.abandoned": "Porzucone",
      "queues.asa": "ASA",
      "queues.empty": "Dziś nie było jeszcze połączeń.",
      "group.roads": "drogi i oświetlenie",
      "group.waste": "odpady i czystość",
      "group.noise": "hałas i porządek",
      "group.other": "inne sprawy",
      "table.title": "Konsultanci: stan i działania",
      "table.agent": "Konsultant",
      "table.state": "Stan",
      "table.reason": "Powód",
      "table.for": "Od",
      "table.call": "Rozmowa",
      "table.phone": "Telefon",
      "table.actions": "Działania",
      "table.empty": "Nie ma jeszcze kont konsultantów.",
      "phone.ok": "✓",
      "phone.ok_title": "telefon zarejestrowany",
      "phone.off": "✗ niedostępny",
      "call.ringing": "dzwoni",
      "call.callback": "oddzwonienie",
      "action.ready": "Gotowy",
      "action.pause": "Przerwa",
      "action.reason": "Powód przerwy",
      "action.listen": "Słuchaj",
      "action.whisper": "Podpowiadaj",
      "toast.ready": "{agent}: gotowy do rozmów",
      "toast.paused": "{agent}: przerwa ({reason})",
      "toast.listen": "Dzwoni Twój telefon ({phone}) — odbierz, aby słuchać rozmowy: {agent}",
      "toast.whisper": "Dzwoni Twój telefon ({phone}) — odbierz, aby podpowiadać: {agent}",
      "toast.failed": "{agent}: nie udało się — {error}",
    },
    en: {
      title: "Supervisor wallboard",
      logout: "Log out",
      "link.connecting": "Connecting…",
      "link.online": "Live",
      "link.offline": "Offline",
      "banner.offline": "Connection to the server lost — reconnecting…",
      "banner.stale": "No updates for {seconds} s — the figures may be out of date",
      "login.title": "Supervisor wallboard",
      "login.hint": "Log in with a supervisor account.",
      "login.name": "User name",
      "login.password": "Password",
      "login.submit": "Log in",
      "login.missing": "Enter your name and password.",
      "login.wrong": "Wrong name or password.",
      "login.supervisors_only":
        "The wallboard is for supervisors only. An agent account cannot open it.",
      "login.expired": "Your session has ended. Please log in again.",
      "login.throttled": "Too many log-in attempts. Try again in a moment.",
      target: "Target: {percent}% in {seconds} s",
      "tile.waiting": "Calls waiting",
      "tile.longest": "Longest wait",
      "tile.sl_15min": "Service level · 15 min",
      "tile.sl_1h": "Service level · 1 hour",
      "tile.sl_today": "Service level · today",
      "tile.asa": "Avg speed of answer · 1 h",
      "tile.p90": "p90 wait · 1 hour",
      "tile.abandon": "Abandoned · 1 hour",
      "tile.callbacks": "Callbacks pending",
      "tile.occupancy": "Occupancy · 15 min",
      "tile.staffing": "Staff: have / need",
      "sub.offered": "offered today: {offered}",
      "sub.target": "target: {seconds} s",
      "sub.sl": "{answered} answered · {rating}",
      "sub.today": "today: {value}",
      "sub.callbacks": "requested today: {requested}",
      "rating.good": "on target",
      "rating.warn": "at risk",
      "rating.bad": "below target",
      "rating.none": "no data yet",
      "staffing.short": "{gap} short (Erlang C, {window})",
      "staffing.enough": "enough agents ({window})",
      "staffing.unknown": "not enough data yet",
      "staffing.language": "{language}: {have} / {need}",
      "staffing.language_short": "{language}: {have} / {need}, {gap} short",
      "window.15min": "15 min",
      "window.1h": "1 hour",
      "agents.title": "Agents",
      "agents.unreachable": "phone offline",
      "agents.pauses": "Pauses:",
      "strip.ready": "ready",
      "strip.ringing": "ringing",
      "strip.on_call": "on call",
      "strip.wrap_up": "wrap-up",
      "strip.paused": "paused",
      "strip.logged_out": "logged out",
      "state.ready": "Ready",
      "state.ringing": "Ringing",
      "state.on_call": "On call",
      "state.wrap_up": "Wrap-up",
      "state.paused": "Paused",
      "state.logged_out": "Logged out",
      "state.unknown": "?",
      "reason.login": "just logged in",
      "reason.no answer": "no answer",
      "reason.unreachable": "phone unreachable",
      "reason.not ready": "not ready",
      "reason.break": "break",
      "reason.lunch": "lunch",
      "reason.meeting": "meeting",
      "reason.training": "training",
      "reason.coaching": "coaching",
      "reason.technical": "technical problem",
      "chart.title": "Service level and queue over the day",
      "chart.time": "Time",
      "chart.sl_15min": "SL 15 min",
      "chart.sl_today": "SL today",
      "chart.target": "Target",
      "chart.waiting": "Waiting",
      "chart.missing": "Chart unavailable: the uPlot library is missing (run scripts/setup.sh).",
      "queues.title": "Queues by language and service group",
      "queues.queue": "Queue",
      "queues.waiting": "Waiting",
      "queues.longest": "Longest",
      "queues.sl_15min": "SL 15 min",
      "queues.sl_today": "SL today",
      "queues.offered": "Offered",
      "queues.abandoned": "Abandoned",
      "queues.asa": "ASA",
      "queues.empty": "No calls yet today.",
      "group.roads": "roads and lighting",
      "group.waste": "waste and cleanliness",
      "group.noise": "noise and public order",
      "group.other": "other questions",
      "table.title": "Agents: state and actions",
      "table.agent": "Agent",
      "table.state": "State",
      "table.reason": "Reason",
      "table.for": "For",
      "table.call": "Call",
      "table.phone": "Phone",
      "table.actions": "Actions",
      "table.empty": "No agent accounts yet.",
      "phone.ok": "✓",
      "phone.ok_title": "phone registered",
      "phone.off": "✗ offline",
      "call.ringing": "ringing",
      "call.callback": "callback",
      "action.ready": "Ready",
      "action.pause": "Pause",
      "action.reason": "Pause reason",
      "action.listen": "Listen",
      "action.whisper": "Whisper",
      "toast.ready": "{agent} is now ready",
      "toast.paused": "{agent} paused ({reason})",
      "toast.listen": "Your phone ({phone}) is ringing — answer it to listen to {agent}",
      "toast.whisper": "Your phone ({phone}) is ringing — answer it to whisper to {agent}",
      "toast.failed": "{agent}: could not do it — {error}",
    },
  });

  let current = null; // {token, name, display_name} of the logged-in supervisor
  let socket = null;
  let lastState = null;
  let lastMessageAt = 0;
  let link = "connecting";
  let chart = null;
  let history = { t: [], sl_15min: [], sl_today: [], waiting: [] };
  let horizon = 24 * 3600;
  const agentRows = new Map();

  // -- small helpers ---------------------------------------------------------------------

  // A translation, or null when the dictionary has none (t() echoes the key then).
  function known(key, vars) {
    const text = C.t(key, vars);
    return text === key ? null : text;
  }

  function percent(value, digits) {
    if (value === null || value === undefined) return "—";
    // Service level is floored so "90%" never shows on a tile rated below a 90% target.
    return (digits === "floor" ? Math.floor(value) : Math.round(value)) + "%";
  }

  function fraction(value) {
    return value === null || value === undefined ? "—" : Math.round(100 * value) + "%";
  }

  function seconds(value) {
    return C.formatSeconds(value);
  }

  function reasonLabel(reason) {
    if (!reason) return "";
    return known("reason." + reason) || reason;
  }

  function groupLabel(group) {
    return known("group." + group) || group;
  }

  function setText(id, text) {
    const el = $(id);
    if (el.textContent !== text) el.textContent = text;
  }

  function setRating(id, rating) {
    $(id).dataset.rating = rating || "none";
  }

  function rem() {
    return parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;
  }

  let toastTimer = null;
  function toast(text, isError) {
    const el = $("toast");
    el.textContent = text;
    el.classList.toggle("error", Boolean(isError));
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (el.hidden = true), isError ? 8000 : 5000);
  }

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
    buildChart();
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
    if (chart) chart.destroy();
    chart = null;
    agentRows.clear();
    $("agent-rows").replaceChildren();
    $("queue-rows").replaceChildren();
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
      new Date(state.at * 1000).toLocaleTimeString(C.language === "pl" ? "pl-PL" : "en-GB", {
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
  }

  function renderTiles(state, board) {
    setText("waiting", String(board.waiting));
    setText("waiting-sub", C.t("sub.offered", { offered: board.offered_today }));
    setRating("tile-waiting", board.wait_rating);
    setText("longest", board.waiting ? seconds(board.longest_wait) : "0:00");
    setText("longest-sub", C.t("sub.target", { seconds: state.target_seconds }));
    setRating("tile-longest", board.wait_rating);

    for (const [window, id] of [
      ["15min", "sl-15min"],
      ["1h", "sl-1h"],
      ["today", "sl-today"],
    ]) {
      const sl = board.sl[window];
      setText(id, percent(sl.percent, "floor"));
      setText(id + "-mark", RATING_MARK[sl.rating] || "");
      setText(
        id + "-sub",
        C.t("sub.sl", { answered: sl.answered, rating: C.t("rating." + sl.rating) })
      );
      setRating("tile-" + id, sl.rating);
    }

    setText("asa", seconds(board.asa["1h"]));
    setText("asa-sub", C.t("sub.today", { value: seconds(board.asa.today) }));
    setText("p90", seconds(board.p90_wait["1h"]));
    setText("p90-sub", C.t("sub.today", { value: seconds(board.p90_wait.today) }));
    setText("abandon", percent(board.abandon_percent["1h"]));
    setText("abandon-sub", C.t("sub.today", { value: percent(board.abandon_percent.today) }));
    setText("callbacks", String(board.callbacks.pending));
    setText(
      "callbacks-sub",
      C.t("sub.callbacks", {
        requested: board.callbacks.requested_today,
        connected: board.callbacks.connected_today,
      })
    );
    setText("occupancy", fraction(board.occupancy["15min"]));
    setText("occupancy-sub", C.t("sub.today", { value: fraction(board.occupancy.today) }));

    const staff = board.staffing;
    setText("staffing", staff.logged_in + " / " + (staff.needed === null ? "—" : staff.needed));
    const window = staff.window ? C.t("window." + staff.window) : "";
    let note = C.t("staffing.unknown");
    if (staff.gap !== null && staff.gap > 0) note = C.t("staffing.short", { gap: staff.gap, window });
    else if (staff.gap !== null) note = C.t("staffing.enough", { window });
    setText("staffing-sub", note);
    // Per language, against the agents who speak it: few English speakers can be short while
    // the floor as a whole is not.
    const languages = (staff.by_language || []).map((row) =>
      C.t(row.gap !== null && row.gap > 0 ? "staffing.language_short" : "staffing.language", {
        language: row.language.toUpperCase(),
        have: row.logged_in,
        need: row.needed === null ? "—" : row.needed,
        gap: row.gap,
      })
    );
    // Each language's figures stay on one line; lines break only between languages.
    setText("staffing-languages", languages.map((text) => text.replace(/ /g, "\u00a0")).join(" · "));
    setRating("tile-staffing", staff.rating);
  }

  function renderStrip(agents) {
    const list = $("agent-states");
    const items = STATES.map((state) =>
      C.element("li", { "data-state": state }, [
        C.element("span", { class: "swatch st-" + state, "aria-hidden": "true" }),
        C.element("span", { class: "count", text: String(agents.by_state[state] || 0) }),
        C.element("span", { text: C.t("strip." + state) }),
      ])
    );
    if (agents.unreachable) {
      items.push(
        C.element("li", { class: "phone-off" }, [
          C.element("span", { class: "count", text: String(agents.unreachable) }),
          C.element("span", { text: C.t("agents.unreachable") }),
        ])
      );
    }
    list.replaceChildren(...items);
    const reasons = Object.entries(agents.paused_by_reason || {}).sort((a, b) => b[1] - a[1]);
    const reasonList = $("pause-reasons");
    if (!reasons.length) {
      reasonList.replaceChildren();
      return;
    }
    reasonList.replaceChildren(
      C.element("li", { text: C.t("agents.pauses") }),
      ...reasons.map(([reason, count]) =>
        C.element("li", {}, [C.element("strong", { text: String(count) }), " " + reasonLabel(reason)])
      )
    );
  }

  function renderQueues(rows) {
    const body = $("queue-rows");
    $("queues-empty").hidden = rows.length > 0;
    body.replaceChildren(
      ...rows.map((row) =>
        C.element("tr", { "data-queue": row.key, class: row.rating_15min === "bad" ? "hot" : "" }, [
          C.element("td", { class: "queue-name" }, [
            C.element("span", { class: "lang", text: row.language.toUpperCase() }),
            groupLabel(row.group),
          ]),
          C.element("td", { class: "num", text: String(row.waiting) }),
          C.element("td", { class: "num", text: row.waiting ? seconds(row.longest_wait) : "—" }),
          C.element("td", {
            class: "rated",
            "data-rating": row.rating_15min,
            text: percent(row.sl_15min, "floor"),
          }),
          C.element("td", {
            class: "rated",
            "data-rating": row.rating_today,
            text: percent(row.sl_today, "floor"),
          }),
          C.element("td", { class: "num", text: String(row.offered_today) }),
          C.element("td", { class: "num", text: String(row.abandoned_today) }),
          C.element("td", { class: "num", text: seconds(row.asa_today) }),
        ])
      )
    );
  }

  // -- agent table: rows are kept (not rebuilt) so a half-chosen pause reason survives updates

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
      PAUSE_REASONS.map((reason) =>
        C.element("option", { value: reason, "data-i18n": "reason." + reason, text: reasonLabel(reason) })
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

  function renderAgents(agents) {
    const body = $("agent-rows");
    $("agents-empty").hidden = agents.length > 0;
    const seen = new Set();
    agents.forEach((agent, index) => {
      const row = agentRow(agent.agent_id);
      seen.add(agent.agent_id);
      if (body.children[index] !== row.tr) body.insertBefore(row.tr, body.children[index] || null);
      const state = agent.state;
      row.tr.dataset.state = state;
      const pillText = known("state." + state) || state;
      if (row.pill.textContent !== pillText) row.pill.textContent = pillText;
      row.pill.className = "pill st-" + state;
      row.reason.textContent = state === "paused" ? reasonLabel(agent.pause_reason) : "";
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

  // -- supervisor actions ---------------------------------------------------------------

  function failed(agent, err) {
    if (err.status === 401) {
      sessionEnded();
      return;
    }
    toast(C.t("toast.failed", { agent, error: err.message }), true);
  }

  async function setState(agent, state, reason) {
    const body = state === "paused" ? { state, reason } : { state };
    try {
      await C.api("POST", "/api/agents/" + encodeURIComponent(agent) + "/state", {
        token: current.token,
        body,
      });
      toast(C.t("toast." + state, { agent, reason: reasonLabel(reason) }));
    } catch (err) {
      failed(agent, err);
    }
  }

  async function listen(agent, mode) {
    try {
      const started = await C.api("POST", "/api/agents/" + encodeURIComponent(agent) + "/listen", {
        token: current.token,
        body: { mode },
      });
      toast(C.t("toast." + mode, { agent, phone: started.phone }));
    } catch (err) {
      failed(agent, err);
    }
  }

  // -- the day chart (uPlot) ------------------------------------------------------------

  function setHistory(h) {
    history = {
      t: h.t.slice(),
      sl_15min: h.sl_15min.slice(),
      sl_today: h.sl_today.slice(),
      waiting: h.waiting.slice(),
    };
    horizon = h.horizon || horizon;
  }

  // The newest point replaces the last one while it is in the same interval.
  function addPoint(p) {
    const n = history.t.length;
    if (n && history.t[n - 1] === p.t) {
      history.sl_15min[n - 1] = p.sl_15min;
      history.sl_today[n - 1] = p.sl_today;
      history.waiting[n - 1] = p.waiting;
    } else if (!n || p.t > history.t[n - 1]) {
      history.t.push(p.t);
      history.sl_15min.push(p.sl_15min);
      history.sl_today.push(p.sl_today);
      history.waiting.push(p.waiting);
    }
    while (history.t.length && history.t[0] <= p.t - horizon) {
      for (const series of Object.values(history)) series.shift();
    }
  }

  function clockLabel(seconds) {
    return new Date(seconds * 1000).toLocaleTimeString(C.language === "pl" ? "pl-PL" : "en-GB", {
      hour: "2-digit",
      minute: "2-digit",
      hour12: false,
    });
  }

  function chartData(state) {
    const target = state ? state.target_sl_percent : 90;
    return [
      history.t,
      history.sl_15min,
      history.sl_today,
      history.t.map(() => target),
      history.waiting,
    ];
  }

  function chartSize() {
    const el = $("chart");
    return { width: Math.max(200, el.clientWidth), height: Math.round(rem() * 13) };
  }

  const TARGET_COLOUR = "#f5b301";

  function drawTarget(u) {
    const target = lastState ? lastState.target_sl_percent : null;
    if (target === null) return;
    const y = u.valToPos(target, "pct", true);
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = TARGET_COLOUR;
    ctx.lineWidth = 2 * devicePixelRatio;
    ctx.setLineDash([10 * devicePixelRatio, 6 * devicePixelRatio]);
    ctx.beginPath();
    ctx.moveTo(u.bbox.left, y);
    ctx.lineTo(u.bbox.left + u.bbox.width, y);
    ctx.stroke();
    ctx.restore();
  }

  function buildChart() {
    const el = $("chart");
    if (chart) chart.destroy();
    chart = null;
    if (typeof window.uPlot === "undefined") {
      el.textContent = C.t("chart.missing");
      return;
    }
    el.replaceChildren();
    const font = Math.round(rem() * 0.85) + "px DejaVu Sans, Arial, sans-serif";
    const axis = {
      stroke: "#d9dee5",
      font,
      grid: { stroke: "#2a3240", width: 1 },
      ticks: { stroke: "#2a3240", width: 1 },
    };
    const percentValue = (u, v) => (v === null || v === undefined ? "—" : v.toFixed(1) + "%");
    chart = new window.uPlot(
      {
        ...chartSize(),
        cursor: { drag: { x: false, y: false } },
        hooks: { draw: [drawTarget] },
        legend: { live: false }, // nobody points at a TV: the legend names the lines
        scales: {
          // From the first point (at least the last hour) to now, so the time axis reads right
          // from the first point on (uPlot would pad a single point by days).
          x: {
            time: true,
            range: () => {
              const now = lastState ? lastState.at : Date.now() / 1000;
              const first = history.t.length ? history.t[0] : now;
              return [Math.min(first, now - 3600), now];
            },
          },
          pct: { range: [0, 100] },
          calls: { range: (u, min, max) => [0, Math.max(4, Math.ceil((max || 0) * 1.2))] },
        },
        axes: [
          { ...axis, space: rem() * 4.5, values: (u, ticks) => ticks.map(clockLabel) },
          { ...axis, scale: "pct", size: rem() * 3.6, values: (u, vals) => vals.map((v) => v + "%") },
          { ...axis, scale: "calls", side: 1, size: rem() * 3, grid: { show: false } },
        ],
        series: [
          { label: C.t("chart.time") },
          {
            label: C.t("chart.sl_15min"),
            scale: "pct",
            stroke: "#5cc8ff",
            width: 3,
            spanGaps: true,
            value: percentValue,
          },
          {
            label: C.t("chart.sl_today"),
            scale: "pct",
            stroke: "#e6e9ee",
            width: 2,
            spanGaps: true,
            value: percentValue,
          },
          {
            // In the legend only: the line itself is drawn across the whole plot (drawTarget).
            label: C.t("chart.target"),
            scale: "pct",
            stroke: TARGET_COLOUR,
            width: 2,
            dash: [10, 6],
            paths: () => null,
            points: { show: false },
            value: percentValue,
          },
          {
            label: C.t("chart.waiting"),
            scale: "calls",
            stroke: "#ff8a4c",
            fill: "rgba(255, 138, 76, 0.25)",
            width: 2,
            paths: window.uPlot.paths.stepped({ align: 1 }),
            points: { show: false },
          },
        ],
      },
      chartData(lastState),
      el
    );
  }

  function updateChart(state) {
    if (chart) chart.setData(chartData(state));
  }

  // -- start -----------------------------------------------------------------------------

  function start() {
    C.translate();
    document.title = C.t("title") + " — CityLine";
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", logout);
    $("language").addEventListener("click", () =>
      C.setLanguage(C.language === "pl" ? "en" : "pl")
    );
    C.onLanguage(() => {
      document.title = C.t("title") + " — CityLine";
      if (!current) return;
      setText("link-text", C.t("link." + link));
      for (const row of agentRows.values()) row.select.setAttribute("aria-label", C.t("action.reason"));
      buildChart();
      if (lastState) render(lastState);
    });
    new ResizeObserver(() => {
      if (chart) chart.setSize(chartSize());
    }).observe($("chart"));
    setInterval(watchFreshness, 1000);

    const saved = session.load();
    if (saved && saved.token) {
      current = saved;
      showBoard();
    } else {
      showLogin();
    }
  }

  start();
})();
