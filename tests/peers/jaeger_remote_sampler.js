// An OpenTelemetry JS SDK whose sampler is @opentelemetry/sampler-jaeger-remote, pointed at tracebox.
// It starts root spans for two operations at the rates of each phase, sends the sampled ones to
// tracebox as Zipkin JSON (a minimal exporter, so tracebox observes only what the SDK keeps, as in
// production), and prints one JSON line per operation per second: started vs sampled.
// usage: node jaeger_remote_sampler.js BASE_URL SERVICE PHASES_JSON
//   PHASES_JSON: [{"seconds": 6, "rates": {"get /busy": 20, "get /rare": 2}}, ...]
'use strict';
const { JaegerRemoteSampler } = require('@opentelemetry/sampler-jaeger-remote');
const { BasicTracerProvider, AlwaysOnSampler } = require('@opentelemetry/sdk-trace-base');

const [base, service, phasesJson] = process.argv.slice(2);
const phases = JSON.parse(phasesJson);
const sampler = new JaegerRemoteSampler({
  endpoint: base, // the sampler appends /sampling?service=NAME
  serviceName: service,
  initialSampler: new AlwaysOnSampler(),
  poolingInterval: 200,
});
let outbox = [];
const exporter = {
  onStart() {},
  onEnd(span) {
    const ctx = span.spanContext();
    const startUs = span.startTime[0] * 1e6 + Math.floor(span.startTime[1] / 1e3);
    outbox.push({
      traceId: ctx.traceId, id: ctx.spanId, name: span.name, kind: 'SERVER',
      timestamp: startUs, duration: 1000, localEndpoint: { serviceName: service },
    });
  },
  forceFlush() { return Promise.resolve(); },
  shutdown() { return Promise.resolve(); },
};
const provider = new BasicTracerProvider({ sampler, spanProcessors: [exporter] });
const tracer = provider.getTracer('tracebox-test');

async function flush() {
  if (!outbox.length) return;
  const body = JSON.stringify(outbox);
  outbox = [];
  await fetch(base + '/api/v2/spans', { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
}

const TICK_MS = 50;
async function main() {
  let second = 0;
  for (let p = 0; p < phases.length; p++) {
    const { seconds, rates } = phases[p];
    for (let s = 0; s < seconds; s++, second++) {
      const started = {}, sampled = {};
      const carry = {};
      for (let t = 0; t < 1000 / TICK_MS; t++) {
        for (const [op, rate] of Object.entries(rates)) {
          carry[op] = (carry[op] || 0) + rate * TICK_MS / 1000;
          while (carry[op] >= 1) {
            carry[op] -= 1;
            const span = tracer.startSpan(op);
            started[op] = (started[op] || 0) + 1;
            if (span.isRecording()) sampled[op] = (sampled[op] || 0) + 1;
            span.end();
          }
        }
        await new Promise(r => setTimeout(r, TICK_MS));
      }
      await flush();
      for (const op of Object.keys(rates)) {
        console.log(JSON.stringify({ phase: p, second, op, started: started[op] || 0, sampled: sampled[op] || 0 }));
      }
    }
  }
  process.exit(0);
}
main().catch(err => { console.error(err); process.exit(1); });
