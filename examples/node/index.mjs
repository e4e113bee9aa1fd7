// The calls a chat front end makes, with the official `openai` npm package, against assistd.
//
// Assistants: create, update, list. A conversation: a thread titled through `metadata.title`, a user
// message, a run polled with `runs.retrieve` until it finishes, and the thread's messages mapped to
// `content[0].text.value` for display. Errors are handled by HTTP status: 401 (a wrong key) is told to
// the user, 429 (rate limited) is retried after the server's `retry-after`.
//
//   npm ci --prefix examples/node && node examples/node/index.mjs
//
// Environment: OPENAI_BASE_URL (default http://127.0.0.1:8000/v1), OPENAI_API_KEY (any key when the
// server has no ASSISTD_API_KEYS), OPENAI_MODEL (default: the first model the server lists).
//
// In a browser, this code runs unchanged with `dangerouslyAllowBrowser: true` and the page's origin in
// the server's ASSISTD_CORS_ORIGINS; give each user their own assistd key, never an upstream key.
import OpenAI from "openai";

const baseURL = process.env.OPENAI_BASE_URL ?? "http://127.0.0.1:8000/v1";
const apiKey = process.env.OPENAI_API_KEY ?? "assistd-local";
const QUESTIONS = ["Hello! Who are you?", "Give me one tip for writing clear error messages."];
const POLL_MS = 500;
const RUN_TIMEOUT_MS = 120_000;
const MAX_ATTEMPTS = 5;
const FINISHED = new Set(["completed", "failed", "cancelled", "expired", "incomplete", "requires_action"]);

// The SDK retries 429s by itself when maxRetries > 0; a front end turns that off to decide what the
// user sees while it waits, as `api()` below does.
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class AuthError extends Error {}

// Every call goes through here: the place a UI maps HTTP statuses to what the user is told.
async function api(what, call) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await call();
    } catch (err) {
      if (!(err instanceof OpenAI.APIError)) throw err;
      if (err.status === 401) {
        throw new AuthError(`${what}: the API key was refused (401). Check OPENAI_API_KEY.`);
      }
      if (err.status === 429 && attempt < MAX_ATTEMPTS) {
        const seconds = Number(err.headers?.get("retry-after")) || 2 ** attempt;
        console.log(`  (429 on ${what}: rate limited, retrying in ${seconds}s, attempt ${attempt})`);
        await sleep(seconds * 1000);
        continue;
      }
      throw err;
    }
  }
}

async function pickModel() {
  if (process.env.OPENAI_MODEL) return process.env.OPENAI_MODEL;
  const models = await api("models.list", () => client.models.list());
  if (!models.data.length) throw new Error("The server lists no models: set OPENAI_MODEL.");
  return models.data[0].id;
}

async function runUntilDone(threadId, assistantId) {
  const run = await api("runs.create", () => client.beta.threads.runs.create(threadId, { assistant_id: assistantId }));
  let current = run;
  const deadline = Date.now() + RUN_TIMEOUT_MS;
  while (!FINISHED.has(current.status)) {
    if (Date.now() > deadline) throw new Error(`run ${run.id} still ${current.status} after ${RUN_TIMEOUT_MS} ms`);
    await sleep(POLL_MS);
    current = await api("runs.retrieve", () => client.beta.threads.runs.retrieve(run.id, { thread_id: threadId }));
  }
  return current;
}

// What a chat view renders: the text of each message, oldest first.
async function chatView(threadId) {
  const page = await api("messages.list", () => client.beta.threads.messages.list(threadId, { order: "asc" }));
  return page.data.map((m) => ({
    role: m.role,
    text: m.content[0]?.type === "text" ? m.content[0].text.value : "",
  }));
}

async function showWrongKey() {
  const stranger = new OpenAI({ baseURL, apiKey: "sk-not-a-real-key", maxRetries: 0 });
  try {
    await api("assistants.list", () => stranger.beta.assistants.list());
    console.log("wrong key accepted: this server runs without ASSISTD_API_KEYS (any key works on loopback)");
  } catch (err) {
    if (!(err instanceof AuthError)) throw err;
    console.log(`401 handled: ${err.message}`);
  }
}

async function main() {
  const model = await pickModel();

  const draft = await api("assistants.create", () =>
    client.beta.assistants.create({ model, name: "Front end demo (draft)", instructions: "Answer briefly." }),
  );
  const assistant = await api("assistants.update", () =>
    client.beta.assistants.update(draft.id, {
      name: "Front end demo",
      instructions: "Answer briefly and kindly.",
    }),
  );
  console.log(`assistant ${assistant.id} "${assistant.name}" on ${assistant.model}`);
  const listed = await api("assistants.list", () => client.beta.assistants.list({ limit: 20, order: "desc" }));
  console.log(`assistants: ${listed.data.map((a) => a.name ?? a.id).join(", ")}`);

  const thread = await api("threads.create", () =>
    client.beta.threads.create({ metadata: { title: "Front end demo chat" } }),
  );
  console.log(`thread ${thread.id} "${thread.metadata.title}"`);

  let failed = 0;
  for (const question of QUESTIONS) {
    await api("messages.create", () =>
      client.beta.threads.messages.create(thread.id, { role: "user", content: question }),
    );
    const run = await runUntilDone(thread.id, assistant.id);
    console.log(`run ${run.id}: ${run.status}`);
    if (run.status !== "completed") {
      failed += 1;
      console.log(`  ${run.last_error?.message ?? "no reply"}`);
    }
  }

  const chat = await chatView(thread.id);
  console.log("--- chat ---");
  for (const { role, text } of chat) console.log(`${role}> ${text}`);
  console.log("------------");

  await showWrongKey();

  await api("threads.delete", () => client.beta.threads.delete(thread.id));
  await api("assistants.delete", () => client.beta.assistants.delete(assistant.id));
  return failed ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error(err instanceof AuthError ? err.message : err);
    process.exitCode = 1;
  },
);
