// $connect and $disconnect: record and forget a connection id.
//
// The store is an append-only file (CONNECTIONS_FILE), not DynamoDB as in a real project:
// serverless-offline runs each handler in worker threads of its own (more under concurrency),
// so module memory is not shared, and a local file is the cheapest shared store there is,
// which favours serverless-offline. Each record is one short line written with O_APPEND
// (`appendFile`'s flag "a"), which Linux writes atomically: `+id username` on $connect,
// `-id` on $disconnect.
import { appendFile } from "node:fs/promises";

const file = process.env.CONNECTIONS_FILE;

export async function handler(event) {
  const id = event.requestContext.connectionId;
  const name = event.queryStringParameters?.username ?? "anonymous";
  await appendFile(file, `+${id} ${name}\n`);
  return { statusCode: 200 };
}

export async function disconnect(event) {
  await appendFile(file, `-${event.requestContext.connectionId}\n`);
  return { statusCode: 200 };
}
