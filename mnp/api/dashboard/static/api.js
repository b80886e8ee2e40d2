// The head's native API as the page uses it: the token the user logged in with is kept in
// this tab's sessionStorage and sent in the X-Mnp-Token header, exactly as the CLI sends it.
// No cookie is involved, so no other site can make the browser send a request as the user
// (nothing to forge: CSRF does not apply); closing the tab forgets the token.

const KEY = "mnp.token";
export const TOKEN_HEADER = "X-Mnp-Token";

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

// POST /api/v1/<op> with a JSON body; the answer's JSON, or an ApiError with the head's message.
export async function call(op, body = {}, signal = undefined, withToken = token()) {
  const r = await fetch(`/api/v1/${encodeURIComponent(op)}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", [TOKEN_HEADER]: withToken || "" },
    body: JSON.stringify(body),
    signal,
  });
  const text = await r.text();
  let data = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = { message: text };
  }
  if (!r.ok) throw new ApiError(r.status, data.__type || "Error", data.message || r.statusText);
  return data;
}

// Follow a job's log (GET /api/v1/logs/<id>?follow=1), calling onText with each chunk until
// the head ends the stream (the job finished) or signal aborts it.
export async function followLog(jobId, onText, signal) {
  const r = await fetch(`/api/v1/logs/${encodeURIComponent(jobId)}?follow=1`, {
    headers: { [TOKEN_HEADER]: token() || "" },
    signal,
  });
  if (!r.ok) throw new ApiError(r.status, "Error", await r.text());
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    onText(decoder.decode(value, { stream: true }));
  }
  onText(decoder.decode());
}
