// The baseline the ingest figures are compared with: a bare Bun.serve that parses the JSON
// body and answers 202, with nothing else.
const server = Bun.serve({
  port: Number(process.argv[2] ?? 0),
  hostname: '127.0.0.1',
  async fetch(req) {
    await req.json()
    return new Response('{"status":"accepted"}', { status: 202, headers: { 'content-type': 'application/json' } })
  },
})
console.log(`baseline listening on ${server.port}`)
