// grpc-js peer: node client.js TARGET [CA CERT KEY] -> runs unary, server-streaming, an error and metadata checks,
// prints one JSON line with the results.
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');
const path = require('path');

const root = path.resolve(__dirname, '..', '..');
const opts = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };
const hello = grpc.loadPackageDefinition(loader.loadSync(path.join(root, 'proto/helloworld/helloworld.proto'), opts)).helloworld;
const test = grpc.loadPackageDefinition(loader.loadSync(path.join(root, 'proto/gmftest/gmftest.proto'), opts)).gmftest;
const fs = require('fs');
const target = process.argv[2];
// node client.js TARGET CA.pem [CERT.pem KEY.pem]: TLS (mutual TLS with a client certificate)
const [ca, cert, key] = process.argv.slice(3).map((f) => fs.readFileSync(f));
const creds = () => (ca ? grpc.credentials.createSsl(ca, key || null, cert || null) : grpc.credentials.createInsecure());
const greeter = new hello.Greeter(target, creds());
const svc = new test.TestService(target, creds());
const out = {};
const deadline = () => new Date(Date.now() + 10000);

greeter.SayHello({ name: 'node' }, { deadline: deadline() }, (err, reply) => {
  out.hello = err ? `error ${err.code}` : reply.message;
  svc.Unary({ action: 'abort', code: 5, details: 'not here' }, new grpc.Metadata(), { deadline: deadline() }, (err2) => {
    out.abort = err2 ? { code: err2.code, details: err2.details } : null;
    const md = new grpc.Metadata();
    md.add('x-node', 'yes');
    svc.Unary({ message: 'm' }, md, { deadline: deadline() }, (err3, reply3) => {
      out.metadata = err3 ? `error ${err3.code}` : reply3.metadata;
      const stream = svc.ServerStream({ message: 's', count: 5 }, { deadline: deadline() });
      const got = [];
      stream.on('data', (r) => got.push(r.index));
      stream.on('error', (e) => { out.stream = `error ${e.code}`; finish(); });
      stream.on('end', () => { out.stream = got; finish(); });
    });
  });
});

function finish() {
  console.log(JSON.stringify(out));
  process.exit(0);
}
