// Shared by the CityLine pages: the page language and texts, JSON API calls, the saved
// session, a live WebSocket that reconnects by itself, and small DOM helpers. One import for a
// page: `import * as C from "/static/common/common.js"`.

export {
  addTranslations,
  known,
  language,
  loadTranslations,
  onLanguage,
  pauseReasons,
  reasonLabel,
  setLanguage,
  t,
  translate,
} from "./i18n.js";
export { api, ApiError, savedSession } from "./api.js";
export { LiveSocket } from "./live-socket.js";
export { $, element, formatSeconds } from "./dom.js";
