// The queues table: one row per language and service group, rated like the tiles.

import * as C from "/static/common/common.js";
import { groupLabel, percent, seconds } from "./wallboard-format.js";

export function renderQueues(rows) {
  const body = C.$("queue-rows");
  C.$("queues-empty").hidden = rows.length > 0;
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

export function clearQueues() {
  C.$("queue-rows").replaceChildren();
}
