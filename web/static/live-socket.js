// A WebSocket to the service that comes back after a drop (with backoff). `onStatus` hears
// "connecting", "online", "offline" and "refused" (the session is no longer valid: the
// `stillAuthorized` check said so), so the page can show a banner or the log-in form.
export class LiveSocket {
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
