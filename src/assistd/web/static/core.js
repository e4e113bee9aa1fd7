// What the playground's modules share: the API client, the page's state, error reporting, file lookups.
import { Api } from "./api.js";

export const api = new Api("/v1");
export const $ = (id) => document.getElementById(id);
// Run statuses in which the run still holds its thread.
export const ACTIVE = new Set(["queued", "in_progress", "requires_action", "cancelling"]);
export const state = {
  models: [],
  assistants: [],
  assistantId: localStorage.getItem("assistd.assistant") || "",
  threads: [],
  threadId: "",
  run: null,
  abort: null,
  messageEls: new Map(),
  stepEls: new Map(),
  fileNames: new Map(),
  fileUrls: new Map(),
};

/** Show an error above the chat; nothing is swallowed, only dismissed by the user. */
export function showError(err) {
  if (err && err.name === "AbortError") return;
  const message = err instanceof Error ? err.message : String(err);
  console.error(err);
  const box = document.createElement("div");
  box.className = "error-banner";
  box.setAttribute("role", "alert");
  box.innerHTML = `<span class="text"></span><button type="button" aria-label="Dismiss">✕</button>`;
  box.querySelector(".text").textContent = message;
  box.querySelector("button").addEventListener("click", () => box.remove());
  const errors = $("errors");
  errors.append(box);
  while (errors.children.length > 3) errors.firstElementChild.remove();
}

/** `fn` with its errors shown instead of thrown: for event handlers. */
export function guarded(fn) {
  return async (...args) => {
    try {
      return await fn(...args);
    } catch (err) {
      showError(err);
      return undefined;
    }
  };
}

window.addEventListener("unhandledrejection", (e) => showError(e.reason));
window.addEventListener("error", (e) => showError(e.error || e.message));

/** A file's name, looked up once (its id when the lookup fails). */
export async function fileName(fileId) {
  if (!state.fileNames.has(fileId)) {
    state.fileNames.set(
      fileId,
      api.get(`/files/${fileId}`).then((f) => f.filename, () => fileId),
    );
  }
  return state.fileNames.get(fileId);
}

/** A file's bytes as an object URL, fetched once: a streaming message re-renders many times. */
export function fileUrl(fileId) {
  if (!state.fileUrls.has(fileId)) state.fileUrls.set(fileId, api.fileUrl(fileId));
  return state.fileUrls.get(fileId);
}
