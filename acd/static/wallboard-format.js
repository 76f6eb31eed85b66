// How the wallboard writes its figures, and small DOM setters that touch an element only when
// its text really changes (the board updates every second).

import * as C from "/static/common/common.js";

const { $ } = C;

export function percent(value, digits) {
  if (value === null || value === undefined) return "—";
  // Service level is floored so "90%" never shows on a tile rated below a 90% target.
  return (digits === "floor" ? Math.floor(value) : Math.round(value)) + "%";
}

export function fraction(value) {
  return value === null || value === undefined ? "—" : Math.round(100 * value) + "%";
}

export function seconds(value) {
  return C.formatSeconds(value);
}

export function groupLabel(group) {
  return C.known("group." + group) || group;
}

export function setText(id, text) {
  const el = $(id);
  if (el.textContent !== text) el.textContent = text;
}

export function setRating(id, rating) {
  $(id).dataset.rating = rating || "none";
}

// The root font size in pixels: the board scales with it, from a desktop to a TV.
export function rem() {
  return parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;
}
