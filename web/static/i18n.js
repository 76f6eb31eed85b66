// The page language and its texts. The texts come from JSON files: /static/common/i18n.json
// (shared by every page: the pause reasons and their labels, the language switch) and one file
// per page. A key missing in the page's language falls back to English, then to the key itself.

const LANG_KEY = "cityline.lang";
const SHARED_TEXTS = "/static/common/i18n.json";
const dictionaries = { pl: {}, en: {} };
const languageListeners = [];
let current =
  localStorage.getItem(LANG_KEY) ||
  ((navigator.language || "pl").toLowerCase().startsWith("pl") ? "pl" : "en");
let reasons = [];

export function language() {
  return current;
}

// The pause reasons a page offers (an agent's own pause, a supervisor's forced one): one list.
export function pauseReasons() {
  return reasons.slice();
}

export function addTranslations(more) {
  for (const [lang, entries] of Object.entries(more)) {
    dictionaries[lang] = Object.assign(dictionaries[lang] || {}, entries);
  }
}

async function readJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(url + ": " + response.status);
  return response.json();
}

// The shared texts, then the page's own (`pageTexts`: the URL of its JSON file).
export async function loadTranslations(pageTexts) {
  const [shared, page] = await Promise.all([readJson(SHARED_TEXTS), readJson(pageTexts)]);
  reasons = shared.pause_reasons || [];
  addTranslations({ pl: shared.pl, en: shared.en });
  addTranslations({ pl: page.pl, en: page.en });
}

export function t(key, vars) {
  let text = (dictionaries[current] || {})[key];
  if (text === undefined) text = dictionaries.en[key];
  if (text === undefined) text = key;
  for (const [name, value] of Object.entries(vars || {})) {
    text = text.split("{" + name + "}").join(String(value));
  }
  return text;
}

// A translation, or null when the dictionaries have none (t() echoes the key then).
export function known(key, vars) {
  const text = t(key, vars);
  return text === key ? null : text;
}

// A pause reason in the page's language; one nobody translated is shown as it came.
export function reasonLabel(reason) {
  if (!reason) return "";
  return known("reason." + reason) || reason;
}

export function translate(root) {
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
  document.documentElement.lang = current;
}

export function setLanguage(lang) {
  current = lang === "en" ? "en" : "pl";
  localStorage.setItem(LANG_KEY, current);
  translate();
  languageListeners.forEach((listener) => listener(current));
}

export function onLanguage(listener) {
  languageListeners.push(listener);
}
