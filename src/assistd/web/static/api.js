// The playground's client for assistd's /v1 API: JSON calls, Server-Sent Events over fetch
// (EventSource cannot POST), and uploads with progress (fetch reports none for request bodies).

const KEY_STORAGE = "assistd.apiKey";

export class ApiError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }
}

function errorFrom(status, text) {
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON (a proxy's page, a crash): the text itself is the best message there is.
  }
  const detail = body && body.error && body.error.message;
  const message = detail || (text && text.length < 300 ? text : `HTTP ${status}`);
  return new ApiError(status, `${message} (HTTP ${status})`, body);
}

export class Api {
  constructor(base = "/v1") {
    this.base = base;
    this.key = localStorage.getItem(KEY_STORAGE) || "";
  }

  setKey(key) {
    this.key = key;
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  }

  headers(extra = {}) {
    const h = { ...extra };
    if (this.key) h.Authorization = `Bearer ${this.key}`;
    return h;
  }

  async request(method, path, body, { signal, key } = {}) {
    const headers = this.headers(body === undefined ? {} : { "Content-Type": "application/json" });
    if (key !== undefined) {
      if (key) headers.Authorization = `Bearer ${key}`;
      else delete headers.Authorization;
    }
    let response;
    try {
      response = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, `Cannot reach the server: ${err.message}`);
    }
    const text = await response.text();
    if (!response.ok) throw errorFrom(response.status, text);
    return text ? JSON.parse(text) : null;
  }

  get(path, opts) {
    return this.request("GET", path, undefined, opts);
  }

  post(path, body = {}, opts) {
    return this.request("POST", path, body, opts);
  }

  del(path, opts) {
    return this.request("DELETE", path, undefined, opts);
  }

  /** Every item of a paginated list, following `after` cursors (bounded, for safety). */
  async listAll(path, { max = 500, params = "" } = {}) {
    const items = [];
    let after = "";
    for (;;) {
      const sep = path.includes("?") ? "&" : "?";
      const page = await this.get(`${path}${sep}limit=100${params}${after ? `&after=${encodeURIComponent(after)}` : ""}`);
      items.push(...page.data);
      if (!page.has_more || !page.data.length || items.length >= max) return items;
      after = page.last_id;
    }
  }

  /**
   * POST `body` with `stream: true` and call `onEvent(event, data)` for each SSE frame as it arrives.
   * Resolves when the stream ends; an HTTP error before the stream starts rejects with an ApiError.
   */
  async stream(path, body, onEvent, signal) {
    let response;
    try {
      response = await fetch(this.base + path, {
        method: "POST",
        headers: this.headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
        body: JSON.stringify({ ...body, stream: true }),
        signal,
      });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, `Cannot reach the server: ${err.message}`);
    }
    if (!response.ok) throw errorFrom(response.status, await response.text());
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        const data = [];
        for (const line of frame.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (!data.length) continue;
        const raw = data.join("\n");
        if (raw === "[DONE]") {
          onEvent("done", null);
          continue;
        }
        let parsed;
        try {
          parsed = JSON.parse(raw);
        } catch {
          parsed = raw;
        }
        onEvent(event, parsed);
      }
    }
  }

  /** Upload a File to /v1/files; `onProgress(fraction)` follows the request body. */
  upload(file, purpose, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `${this.base}/files`);
      if (this.key) xhr.setRequestHeader("Authorization", `Bearer ${this.key}`);
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) onProgress(e.loaded / e.total);
      };
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) resolve(JSON.parse(xhr.responseText));
        else reject(errorFrom(xhr.status, xhr.responseText));
      };
      xhr.onerror = () => reject(new ApiError(0, "The upload failed: the server could not be reached."));
      const form = new FormData();
      form.append("purpose", purpose);
      form.append("file", file, file.name);
      xhr.send(form);
    });
  }

  /** A file's bytes as an object URL (images need the key, so <img src> cannot fetch them itself). */
  async fileUrl(fileId) {
    const response = await fetch(`${this.base}/files/${encodeURIComponent(fileId)}/content`, { headers: this.headers() });
    if (!response.ok) throw errorFrom(response.status, await response.text());
    return URL.createObjectURL(await response.blob());
  }
}
