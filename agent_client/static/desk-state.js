// What the desk knows now: the session, the agent's ACD state, the call on the softphone, the
// pop of the current call and the service catalogue. The desk's modules share this one object.

export const desk = {
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
export const marks = [];
window.cityDesk = { marks, state: desk };
