// Streams a run with the official `openai` npm package's helper (`client.beta.threads.runs.stream`) and
// prints, as one JSON line, what the SDK accumulated: `finalMessages()` (merged from the deltas), the
// messages of `messageDone` (the completed messages as sent), and every annotation of every text delta.
// The SDK throws while merging if a delta annotation lacks its `index`; the summary then carries `error`.
//
// Environment: ASSISTD_BASE_URL, ASSISTD_API_KEY, THREAD_ID, ASSISTANT_ID.
import OpenAI from "openai";

const summary = { ok: false };

async function main() {
  const client = new OpenAI({
    baseURL: process.env.ASSISTD_BASE_URL,
    apiKey: process.env.ASSISTD_API_KEY,
    maxRetries: 0,
    timeout: 60_000,
  });
  const stream = client.beta.threads.runs.stream(process.env.THREAD_ID, {
    assistant_id: process.env.ASSISTANT_ID,
  });
  const done = [];
  const deltaAnnotations = [];
  stream.on("messageDone", (message) => done.push(structuredClone(message)));
  stream.on("messageDelta", (delta) => {
    for (const part of delta.content ?? []) {
      // Cloned now: the SDK merges later deltas into these very objects.
      if (part.type === "text") deltaAnnotations.push(...structuredClone(part.text?.annotations ?? []));
    }
  });
  summary.final_messages = await stream.finalMessages();
  summary.run_status = (await stream.finalRun()).status;
  summary.done_messages = done;
  summary.delta_annotations = deltaAnnotations;
  summary.ok = true;
}

try {
  await main();
} catch (err) {
  summary.error = String(err?.stack ?? err);
  process.exitCode = 1;
}
console.log(JSON.stringify(summary));
