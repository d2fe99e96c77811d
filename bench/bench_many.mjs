// The OpenAI Node SDK doing what bench_many.cpp does: N streams to a loopback server at once, each
// read to its end, in one Node process; prints the events, the peak RSS and the CPU time.
//   OPENAI_SDK_DIR=DIR node bench/bench_many.mjs URL N    (DIR: where `npm install openai` was run)
import { createRequire } from 'node:module';

const require = createRequire(`${process.env.OPENAI_SDK_DIR || process.cwd()}/`);
const OpenAI = require('openai').default;
const sdkVersion = require('openai/version').VERSION;

const [url, countText] = process.argv.slice(2);
const count = Number(countText);
const client = new OpenAI({ baseURL: url, apiKey: 'bench', maxRetries: 0 });
const rssBefore = process.memoryUsage().rss;
const cpuBefore = process.cpuUsage();
const start = process.hrtime.bigint();
let events = 0, failed = 0;

async function one() {
  try {
    const stream = await client.chat.completions.create({
      model: 'bench', messages: [{ role: 'user', content: 'hi' }], stream: true,
    });
    for await (const chunk of stream) if (chunk) ++events;
  } catch (e) {
    if (failed++ === 0) console.error('a stream failed:', e.message);
  }
}

await Promise.all(Array.from({ length: count }, one));
const cpu = process.cpuUsage(cpuBefore);
const wall = Number(process.hrtime.bigint() - start) / 1e9;
const peakRss = process.resourceUsage().maxRSS * 1024;  // maxRSS is in KiB
const mib = (bytes) => (bytes / 1048576).toFixed(1);
console.log(`openai-node ${sdkVersion} ${String(count).padStart(6)} streams: ${events} events, ${failed} failed; ` +
  `peak RSS ${mib(peakRss)} MiB (${((peakRss - rssBefore) / 1024 / count).toFixed(1)} KiB/stream over the ` +
  `${mib(rssBefore)} MiB before); CPU ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s; wall ${wall.toFixed(2)} s`);
process.exit(failed === 0 ? 0 : 1);
