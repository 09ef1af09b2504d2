// sendMessage, as wsstack's broadcast does it (handlers/src/routes/send_message.rs): list every
// connection, then post the message frame to each through the Management API's SDK client
// (SigV4-signed PostToConnection), 64 posts in flight, as wsstack's fan-out
// (BENCH_BROADCAST_CONCURRENCY's default). A post that answers 410 drops the record.
//
// The connections are in CONNECTIONS_FILE (see connect.mjs for why a file).
import { appendFile, readFile } from "node:fs/promises";
import {
  ApiGatewayManagementApiClient,
  GoneException,
  PostToConnectionCommand,
} from "@aws-sdk/client-apigatewaymanagementapi";

const IN_FLIGHT = 64;
const file = process.env.CONNECTIONS_FILE;

// Built once per worker thread, as wsstack builds its client once per Lambda instance. Static
// credentials: the SDK then never looks for others (no network call to a metadata service).
const client = new ApiGatewayManagementApiClient({
  endpoint: process.env.MANAGEMENT_ENDPOINT,
  region: "us-east-1",
  credentials: { accessKeyId: "local", secretAccessKey: "local" },
});

/** Every open connection: id -> username. */
async function connections() {
  const open = new Map();
  for (const line of (await readFile(file, "utf8")).split("\n")) {
    if (line.startsWith("+")) {
      const space = line.indexOf(" ");
      open.set(line.slice(1, space), line.slice(space + 1));
    } else if (line.startsWith("-")) {
      open.delete(line.slice(1));
    }
  }
  return open;
}

async function post(id, data) {
  try {
    await client.send(new PostToConnectionCommand({ ConnectionId: id, Data: data }));
  } catch (e) {
    if (!(e instanceof GoneException) && e?.$metadata?.httpStatusCode !== 410) throw e;
    await appendFile(file, `-${id}\n`);
  }
}

export async function handler(event) {
  const ctx = event.requestContext;
  const body = JSON.parse(event.body ?? "{}");
  if (typeof body.data !== "string") {
    return { statusCode: 400, body: "data must be a string" };
  }
  const open = await connections();
  const frame = JSON.stringify({
    type: "message",
    id: ctx.messageId ?? ctx.requestId,
    from: open.get(ctx.connectionId) ?? "anonymous",
    data: body.data,
    sentAt: new Date(ctx.requestTimeEpoch ?? Date.now()).toISOString(),
  });
  const data = new TextEncoder().encode(frame);
  const ids = [...open.keys()];
  let next = 0;
  let failed = 0;
  const worker = async () => {
    while (next < ids.length) {
      const id = ids[next++];
      await post(id, data).catch(() => failed++);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  if (failed > 0) console.error(`sendMessage: ${failed} of ${ids.length} posts failed`);
  return { statusCode: 200 };
}
