// Shared by the CityLine pages: the page language, JSON API calls, the saved session, and a
// live WebSocket that reconnects by itself. No framework: the pages are small and must load
// from the service alone, with no network beyond it.
(function () {
  "use strict";

  const LANG_KEY = "cityline.lang";
  const dictionaries = { pl: {}, en: {} };
  const languageListeners = [];
  let language =
    localStorage.getItem(LANG_KEY) ||
    ((navigator.language || "pl").toLowerCase().startsWith("pl") ? "pl" : "en");

  function addTranslations(more) {
    for (const [lang, entries] of Object.entries(more)) {
      dictionaries[lang] = Object.assign(dictionaries[lang] || {}, entries);
    }
  }

  function t(key, vars) {
    let text = (dictionaries[language] || {})[key];
    if (text === undefined) text = dictionaries.en[key];
    if (text === undefined) text = key;
    for (const [name, value] of Object.entries(vars || {})) {
      text = text.split("{" + name + "}").join(String(value));
    }
    return text;
  }

  function translate(root) {
    const scope = root || document;
    scope.querySelectorAll("[data-i18n]").forEach((el) => {
      el.textContent = t(el.dataset.i18n);
    });
    scope.querySelectorAll("[data-i18n-placeholder]").forEach((el) => {
      el.placeholder = t(el.dataset.i18nPlaceholder);
    });
    scope.querySelectorAll("[data-i18n-title]").forEach((el) => {
      el.title = t(el.dataset.i18nTitle);
    });
    document.documentElement.lang = language;
  }

  function setLanguage(lang) {
    language = lang === "en" ? "en" : "pl";
    localStorage.setItem(LANG_KEY, language);
    translate();
    languageListeners.forEach((listener) => listener(language));
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // One JSON call to the service. Errors carry the HTTP status and the server's message.
  async function api(method, path, options) {
    const opts = options || {};
    const headers = { Accept: "application/json" };
    if (opts.token) headers.Authorization = "Bearer " + opts.token;
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      });
    } catch (err) {
      throw new ApiError(0, t("error.offline"));
    }
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      const message = (data && data.error) || response.statusText || String(response.status);
      const error = new ApiError(response.status, message);
      error.retryAfter = Number(response.headers.get("Retry-After") || 0);
      throw error;
    }
    return data;
  }

  // The logged-in session of one page kind ("desk", "wallboard"), kept across reloads.
  function savedSession(kind) {
    const key = "cityline." + kind + ".session";
    return {
      load() {
        try {
          return JSON.parse(localStorage.getItem(key) || "null");
        } catch (err) {
          return null;
        }
      },
      save(value) {
        localStorage.setItem(key, JSON.stringify(value));
      },
      clear() {
        localStorage.removeItem(key);
      },
    };
  }

  // A WebSocket to the service that comes back after a drop (with backoff). `onStatus` hears
  // "connecting", "online", "offline" and "refused" (the session is no longer valid: the
  // `stillAuthorized` check said so), so the page can show a banner or the log-in form.
  class LiveSocket {
    constructor(path, options) {
      this.path = path;
      this.options = options;
      this.ws = null;
      this.delay = 500;
      this.stopped = false;
      this.timer = null;
    }

    url() {
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      return scheme + "//" + location.host + this.path;
    }

    open() {
      this.stopped = false;
      this.options.onStatus && this.options.onStatus("connecting");
      const ws = new WebSocket(this.url());
      this.ws = ws;
      ws.onopen = () => {
        this.delay = 500;
        this.options.onStatus && this.options.onStatus("online");
      };
      ws.onmessage = (event) => {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch (err) {
          console.warn("ignored a message that is not JSON", err);
          return;
        }
        this.options.onMessage(message);
      };
      ws.onclose = () => {
        if (this.ws !== ws || this.stopped) return;
        this.ws = null;
        this.retry();
      };
    }

    async retry() {
      if (this.options.stillAuthorized) {
        let authorized = true;
        try {
          authorized = await this.options.stillAuthorized();
        } catch (err) {
          authorized = true; // the server is away: keep trying
        }
        if (!authorized) {
          this.stopped = true;
          this.options.onStatus && this.options.onStatus("refused");
          return;
        }
      }
      this.options.onStatus && this.options.onStatus("offline");
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.open(), this.delay);
      this.delay = Math.min(this.delay * 2, 5000);
    }

    send(message) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(JSON.stringify(message));
        return true;
      }
      return false;
    }

    close() {
      this.stopped = true;
      clearTimeout(this.timer);
      if (this.ws) this.ws.close();
      this.ws = null;
    }
  }

  // "1:05" for 65 seconds; "—" when there is nothing to show.
  function formatSeconds(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return "—";
    const total = Math.max(0, Math.round(Number(seconds)));
    const minutes = Math.floor(total / 60);
    const rest = String(total % 60).padStart(2, "0");
    return minutes + ":" + rest;
  }

  function element(tag, attributes, children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (name === "text") el.textContent = value;
      else if (name === "class") el.className = value;
      else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else if (value !== undefined && value !== null && value !== false) el.setAttribute(name, value);
    }
    for (const child of children || []) {
      if (child !== null && child !== undefined) {
        el.append(typeof child === "string" ? document.createTextNode(child) : child);
      }
    }
    return el;
  }

  addTranslations({
    pl: {
      "error.offline": "Brak połączenia z serwerem",
      "language.switch": "English",
    },
    en: {
      "error.offline": "No connection to the server",
      "language.switch": "Polski",
    },
  });

  window.CityLine = {
    addTranslations,
    t,
    translate,
    setLanguage,
    get language() {
      return language;
    },
    onLanguage(listener) {
      languageListeners.push(listener);
    },
    api,
    ApiError,
    savedSession,
    LiveSocket,
    formatSeconds,
    element,
  };
})();
