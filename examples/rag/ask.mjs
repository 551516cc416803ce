// examples/rag/ask.mjs - retrieve context from kanoa-mlops and ask a chat
// model, with the official openai SDK (npm install openai).
//   OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=none \
//   CHAT_MODEL=... COLLECTION=example node ask.mjs "question"
import OpenAI from "openai";

const client = new OpenAI(); // reads OPENAI_BASE_URL and OPENAI_API_KEY
const question = process.argv[2] ?? "What does ROC AUC measure?";

// POST /v1/retrieve is not an OpenAI route: call it through the client's
// generic post() so it shares the base URL, key and retries.
const { data: hits } = await client.post("/retrieve", {
  body: { collection: process.env.COLLECTION ?? "example", query: question, k: 3, mode: "hybrid" },
});
const context = hits
  .map((h) => `[Source: ${h.source_uri} (score: ${h.score.toFixed(2)})]\n${h.text}`)
  .join("\n\n");

const chat = await client.chat.completions.create({
  model: process.env.CHAT_MODEL,
  messages: [
    { role: "system", content: `Answer from this context and cite the sources.\n\n${context}` },
    { role: "user", content: question },
  ],
});
console.log(chat.choices[0].message.content);
