// Validates an AsyncAPI document with the AsyncAPI project's own parser (npm @asyncapi/parser).
// Usage: node tests/asyncapi/validate.cjs docs/asyncapi.yaml
// Prints every diagnostic as `severity code path: message` (severity 0 error, 1 warning,
// 2 information, 3 hint) and exits 1 when there is an error or the document did not parse.
const fs = require("fs");
const { Parser } = require("@asyncapi/parser");

async function main() {
  const file = process.argv[2];
  if (!file) {
    console.error("usage: validate.cjs FILE");
    process.exit(2);
  }
  const text = fs.readFileSync(file, "utf8");
  const { document, diagnostics } = await new Parser().parse(text);
  for (const d of diagnostics) {
    console.log(`${d.severity} ${d.code} ${JSON.stringify(d.path)}: ${d.message}`);
  }
  const errors = diagnostics.filter((d) => d.severity === 0).length;
  console.log(`parsed: ${document ? "yes" : "no"}; errors: ${errors}; diagnostics: ${diagnostics.length}`);
  process.exit(document && errors === 0 ? 0 : 1);
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
