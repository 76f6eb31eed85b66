// The board's figures: the queue and service-level tiles, the second row (answer times,
// abandoned calls, callbacks, occupancy, staffing per language) and the strip of agent states
// with the pause reasons. The service rates every figure (board.*.rating); this lays them out.

import * as C from "/static/common/common.js";
import { fraction, percent, seconds, setRating, setText } from "./wallboard-format.js";

const STATES = ["ready", "ringing", "on_call", "wrap_up", "paused", "logged_out"];
const RATING_MARK = { good: "✓", warn: "!", bad: "✗", none: "" };

export function renderTiles(state, board) {
  setText("waiting", String(board.waiting));
  setText("waiting-sub", C.t("sub.offered", { offered: board.offered_today }));
  setRating("tile-waiting", board.wait_rating);
  setText("longest", board.waiting ? seconds(board.longest_wait) : "0:00");
  setText("longest-sub", C.t("sub.target", { seconds: state.target_seconds }));
  setRating("tile-longest", board.wait_rating);

  for (const [period, id] of [
    ["15min", "sl-15min"],
    ["1h", "sl-1h"],
    ["today", "sl-today"],
  ]) {
    const sl = board.sl[period];
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
  renderStaffing(board.staffing);
}

function renderStaffing(staff) {
  setText("staffing", staff.logged_in + " / " + (staff.needed === null ? "—" : staff.needed));
  const period = staff.window ? C.t("window." + staff.window) : "";
  let note = C.t("staffing.unknown");
  if (staff.gap !== null && staff.gap > 0) note = C.t("staffing.short", { gap: staff.gap, window: period });
  else if (staff.gap !== null) note = C.t("staffing.enough", { window: period });
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

export function renderStrip(agents) {
  const list = C.$("agent-states");
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
  const reasonList = C.$("pause-reasons");
  if (!reasons.length) {
    reasonList.replaceChildren();
    return;
  }
  reasonList.replaceChildren(
    C.element("li", { text: C.t("agents.pauses") }),
    ...reasons.map(([reason, count]) =>
      C.element("li", {}, [C.element("strong", { text: String(count) }), " " + C.reasonLabel(reason)])
    )
  );
}
