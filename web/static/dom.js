// Small DOM and formatting helpers the pages share. No framework: the pages are small and must
// load from the service alone, with no network beyond it.

export const $ = (id) => document.getElementById(id);

// "1:05" for 65 seconds; "—" when there is nothing to show.
export function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return "—";
  const total = Math.max(0, Math.round(Number(seconds)));
  const minutes = Math.floor(total / 60);
  const rest = String(total % 60).padStart(2, "0");
  return minutes + ":" + rest;
}

export function element(tag, attributes, children) {
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
