// HTTP calls to tandem's /api/v1 (same origin). Errors come back as {error: {code, message}}.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function request(method, path, { token, body } = {}) {
  const headers = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, 'network', `network error: ${e.message}`);
  }
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) {
    const err = json?.error;
    const message = (typeof err === 'object' ? err?.message : err) || json?.detail || text || res.statusText;
    throw new ApiError(res.status, err?.code ?? String(res.status), `${method} ${path}: ${res.status} ${message}`.trim());
  }
  return json;
}

/// `POST /api/v1/demo/signin {name}` → `{token, user: {id, name, role}, channel_id}`.
/// Resolves to null when the server has demo sign-in disabled (404).
export async function demoSignin(name) {
  try {
    return await request('POST', '/api/v1/demo/signin', { body: { name } });
  } catch (e) {
    if (e.status === 404 || e.status === 405) return null;
    throw e;
  }
}

/// The calls a signed-in page makes, all with its bearer token.
export class Api {
  constructor(token) {
    this.token = token;
  }

  call(method, path, body) {
    return request(method, path, { token: this.token, body });
  }

  postMessage(channelId, content) {
    return this.call('POST', `/api/v1/channels/${encodeURIComponent(channelId)}/messages`, { content });
  }

  chatCompletion(body) {
    return this.call('POST', '/api/v1/chat/completions', body);
  }

  history(documentId) {
    return this.call('GET', `/api/v1/documents/${encodeURIComponent(documentId)}/history`);
  }

  snapshot(documentId, label) {
    return this.call('POST', `/api/v1/documents/${encodeURIComponent(documentId)}/snapshot`, { label });
  }

  restore(documentId, version) {
    return this.call('POST', `/api/v1/documents/${encodeURIComponent(documentId)}/restore`, { version });
  }
}
