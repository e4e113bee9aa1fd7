// Drives assistd with the official `openai` npm package the way a browser front end does, and prints
// a JSON summary on stdout.  Exits non-zero on any failure (the summary then carries `error`).
//
// Environment: ASSISTD_BASE_URL (e.g. http://127.0.0.1:8000/v1), ASSISTD_API_KEY, and optionally
// CHECK_MESSAGE (the user message to send) and CHECK_POLL_SECONDS (how long to poll a run, default 30).
import OpenAI from "openai";
import { VERSION } from "openai/version";

const TERMINAL = new Set(["completed", "failed", "cancelled", "expired", "incomplete", "requires_action"]);

const baseURL = process.env.ASSISTD_BASE_URL;
const apiKey = process.env.ASSISTD_API_KEY;
const userText = process.env.CHECK_MESSAGE ?? "Hello from the Node SDK check";
const pollSeconds = Number(process.env.CHECK_POLL_SECONDS ?? "30");

const summary = { ok: false, sdk_version: VERSION, steps: [] };

function expect(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

function step(name) {
  summary.steps.push(name);
}

async function main() {
  expect(baseURL && apiKey, "ASSISTD_BASE_URL and ASSISTD_API_KEY are set");
  // A browser bundle needs dangerouslyAllowBrowser; set it so this mirrors the front end's client.
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30_000, dangerouslyAllowBrowser: true });

  // Assistants: create, update, find it in the (auto-paginated) list.
  const tag = `node-check-${Date.now()}-${Math.random().toString(16).slice(2, 8)}`;
  const created = await client.beta.assistants.create({
    model: "fake-model",
    name: `${tag} (draft)`,
    instructions: "Answer briefly.",
    metadata: { source: "node-sdk-check" },
  });
  expect(created.object === "assistant" && created.id.startsWith("asst_"), "assistant created");
  step("assistants.create");
  // Two newer assistants push ours onto the second page of a newest-first listing of size 2.
  const fillers = [];
  for (const n of [1, 2]) {
    fillers.push(await client.beta.assistants.create({ model: "fake-model", name: `${tag} filler ${n}` }));
  }
  const updated = await client.beta.assistants.update(created.id, {
    name: tag,
    instructions: "Answer very briefly.",
  });
  expect(updated.id === created.id && updated.name === tag, "assistant renamed");
  step("assistants.update");
  let listedCount = 0;
  let found = null;
  // A small page size makes the SDK's async iterator follow `after` cursors over several pages.
  for await (const assistant of client.beta.assistants.list({ limit: 2, order: "desc" })) {
    listedCount += 1;
    if (assistant.id === created.id) {
      found = assistant;
      break;
    }
  }
  expect(found !== null, "the new assistant is in assistants.list");
  expect(found.name === tag && found.instructions === "Answer very briefly.", "listed assistant is updated");
  step("assistants.list");
  for (const filler of fillers) {
    const deleted = await client.beta.assistants.delete(filler.id);
    expect(deleted.deleted === true && deleted.id === filler.id, "filler assistant deleted");
  }
  step("assistants.delete");
  summary.assistant = {
    id: created.id,
    name: found.name,
    instructions: found.instructions,
    metadata: found.metadata,
    listed_before_found: listedCount,
  };

  // A conversation: a thread titled in metadata, then a user message.
  const title = `Chat ${tag}`;
  const thread = await client.beta.threads.create({ metadata: { title } });
  expect(thread.object === "thread" && thread.id.startsWith("thread_"), "thread created");
  step("threads.create");
  const retrievedThread = await client.beta.threads.retrieve(thread.id);
  expect(retrievedThread.metadata?.title === title, "thread title kept");
  step("threads.retrieve");
  const sent = await client.beta.threads.messages.create(thread.id, { role: "user", content: userText });
  expect(sent.role === "user" && sent.content[0]?.type === "text", "user message created");
  expect(sent.content[0].text.value === userText, "user message text kept");
  step("messages.create");
  summary.thread = { id: thread.id, title: retrievedThread.metadata.title };

  // A run, polled the way a UI does until the status is terminal.
  const run = await client.beta.threads.runs.create(thread.id, { assistant_id: created.id });
  expect(["queued", "in_progress"].includes(run.status), `new run is queued or in_progress (${run.status})`);
  step("runs.create");
  const statuses = [run.status];
  let current = run;
  const deadline = Date.now() + pollSeconds * 1000;
  while (!TERMINAL.has(current.status)) {
    expect(Date.now() < deadline, `run reached a terminal status within ${pollSeconds}s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    current = await client.beta.threads.runs.retrieve(run.id, { thread_id: thread.id });
    if (statuses[statuses.length - 1] !== current.status) statuses.push(current.status);
  }
  step("runs.retrieve");
  summary.run = {
    id: run.id,
    initial_status: run.status,
    status: current.status,
    statuses,
    thread_id: current.thread_id,
    assistant_id: current.assistant_id,
    usage: current.usage,
    last_error: current.last_error,
  };

  // The transcript, oldest first, mapped like a chat view does.
  const page = await client.beta.threads.messages.list(thread.id, { order: "asc" });
  const messages = page.data.map((m) => ({
    id: m.id,
    role: m.role,
    status: m.status,
    run_id: m.run_id,
    text: m.content[0]?.type === "text" ? m.content[0].text.value : null,
  }));
  step("messages.list");
  summary.messages = messages;
  const replies = messages.filter((m) => m.role === "assistant");
  summary.reply = replies.length ? replies[replies.length - 1].text : null;

  // A wrong key: the SDK must raise an error whose status is 401.
  const badClient = new OpenAI({ baseURL, apiKey: "sk-wrong-key", maxRetries: 0, timeout: 30_000 });
  try {
    await badClient.beta.assistants.list();
    throw new Error("check failed: a bad key was accepted");
  } catch (err) {
    if (!(err instanceof OpenAI.APIError)) throw err;
    expect(err.status === 401, `bad key gives status 401 (got ${err.status})`);
    summary.auth_error = {
      status: err.status,
      is_authentication_error: err instanceof OpenAI.AuthenticationError,
      type: err.type ?? null,
      code: err.code ?? null,
      message: err.message,
    };
  }
  step("auth.401");

  summary.ok = true;
}

main().then(
  () => {
    process.stdout.write(JSON.stringify(summary) + "\n");
  },
  (err) => {
    summary.error = {
      name: err?.name ?? null,
      message: String(err?.message ?? err),
      status: err?.status ?? null,
    };
    process.stdout.write(JSON.stringify(summary) + "\n");
    process.exitCode = 1;
  },
);
