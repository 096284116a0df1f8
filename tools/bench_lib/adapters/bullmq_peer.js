// BullMQ in the bench: the worker and the producer actions of bench_lib/producer.py, in Node.
//   node bullmq_peer.js worker                    (BENCH_REDIS_URL, BENCH_CONCURRENCY, BENCH_PROBE)
//   node bullmq_peer.js produce ACTION JSON        (prints one JSON line)
// BullMQ is resolved through NODE_PATH (bench-env/node/node_modules), set by the bench.
'use strict';
const { Queue, Worker } = require('bullmq');
const IORedis = require('ioredis');

const URL_ = process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379/0';
const QUEUE = 'bench';
const JOB_OPTS = { removeOnComplete: true, removeOnFail: 1000 };
const CHUNK = 1000;

const now = () => (performance.timeOrigin + performance.now()) / 1000;
const sleep = (s) => new Promise((r) => setTimeout(r, s * 1000));
const uniform = (lo, hi) => lo + Math.random() * (hi - lo);

function connection() {
  const u = new URL(URL_);
  const db = Number((u.pathname || '/0').slice(1) || 0);
  return { host: u.hostname, port: Number(u.port || 6379), db, maxRetriesPerRequest: null };
}

function makeProbe() {
  const redis = new IORedis(connection());
  const mode = process.env.BENCH_PROBE || 'count';
  let count = 0, sent = 0, first = 0, last = 0;
  if (mode === 'count') {
    setInterval(async () => {
      if (count === sent) return;
      const delta = count - sent;
      sent = count; // before the await: the next tick must not send the same hits again
      await redis.pipeline().incrby('bench:done', delta)
        .zadd('bench:span', 'LT', first, 'first').zadd('bench:span', 'GT', last, 'last').exec();
    }, 5).unref();
  }
  return async (arg) => {
    const t = now();
    if (mode === 'stamp') {
      await redis.rpush('bench:stamps', `${Number(arg || 0).toFixed(6)} ${t.toFixed(6)}`);
      return;
    }
    if (!count) first = t;
    count += 1;
    last = t;
  };
}

async function worker() {
  const hit = makeProbe();
  const concurrency = Number(process.env.BENCH_CONCURRENCY || 100);
  // BENCH_HANDLER=call: the one-Redis-call handler of probe.py, INCR on one ioredis client
  // (ioredis pipelines concurrent commands over its one connection, as Node apps use it).
  const calls = process.env.BENCH_HANDLER === 'call' ? new IORedis(connection()) : null;
  const handler = calls
    ? async (job) => { await calls.incr('bench:calls'); await hit(job.data.arg); }
    : async (job) => { await hit(job.data.arg); };
  const w = new Worker(QUEUE, handler, { connection: connection(), concurrency });
  const stop = async () => { await w.close(); process.exit(0); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function blpop(redis, timeout) {
  const reply = await redis.blpop('bench:stamps', timeout);
  return reply ? reply[1].split(' ').map(Number) : null;
}

async function warmUp(queue, redis, stamp) {
  await queue.add('noop', { arg: stamp ? now() : 0 }, JOB_OPTS);
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    if (stamp) { if (await blpop(redis, 1)) return; }
    else if (Number(await redis.get('bench:done') || 0) >= 1) return;
    else await sleep(0.01);
  }
  throw new Error('the worker did not run a warm-up task within 60 s');
}

const actions = {
  async fill(queue, redis, p) {
    const arg = p.payload || 0;
    const t0 = performance.now();
    const base = now() + 86400;
    const delay = () => Math.round((base + uniform(0, 86400) - now()) * 1000);
    if (p.bulk) {
      for (let i = 0; i < p.n; i += CHUNK) {
        const jobs = [];
        for (let j = 0; j < Math.min(CHUNK, p.n - i); j++) {
          jobs.push({ name: 'noop', data: { arg }, opts: p.backlog ? { ...JOB_OPTS, delay: delay() } : JOB_OPTS });
        }
        await queue.addBulk(jobs);
      }
    } else {
      for (let i = 0; i < p.n; i++) {
        await queue.add('noop', { arg }, p.backlog ? { ...JOB_OPTS, delay: delay() } : JOB_OPTS);
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    return { n: p.n, seconds, rate: p.n / seconds, bulk: Boolean(p.bulk) };
  },
  async fill_concurrent(queue, redis, p) {
    // p.producers async producers at once, each awaiting its own add (ioredis overlaps them).
    const producers = p.producers || 100, per = Math.floor(p.n / producers);
    await queue.add('noop', { arg: 0 }, JOB_OPTS);
    const t0 = performance.now();
    const one = async () => { for (let i = 0; i < per; i++) await queue.add('noop', { arg: 0 }, JOB_OPTS); };
    await Promise.all(Array.from({ length: producers }, one));
    const seconds = (performance.now() - t0) / 1000;
    return { n: per * producers, seconds, rate: (per * producers) / seconds, concurrent: true };
  },
  async pickup(queue, redis, p) {
    const warm = p.warm ?? 3, out = [];
    let deadline = Infinity;
    for (let i = 0; i < warm + p.n; i++) {
      if (i === warm) deadline = Date.now() + (p.budget ?? 3600) * 1000;
      else if (i > warm && Date.now() > deadline) break;
      await sleep(uniform(p.gap_min ?? 0.02, p.gap_max ?? 0.1));
      await queue.add('noop', { arg: now() }, JOB_OPTS);
      const stamp = await blpop(redis, i < warm ? 30 : 10);
      if (!stamp) return { error: `no handler start within the timeout (task ${i})`, latencies_ms: out };
      if (i >= warm) out.push((stamp[1] - stamp[0]) * 1000);
    }
    return { latencies_ms: out };
  },
  async lateness(queue, redis, p) {
    await warmUp(queue, redis, true);
    for (let i = 0; i < p.n; i++) {
      const due = now() + uniform(p.min_delay, p.max_delay);
      await queue.add('noop', { arg: due }, { ...JOB_OPTS, delay: Math.round((due - now()) * 1000) });
    }
    const out = [], deadline = Date.now() + (p.max_delay + 10) * 1000;
    while (out.length < p.n && Date.now() < deadline) {
      const stamp = await blpop(redis, 1);
      if (stamp) out.push((stamp[1] - stamp[0]) * 1000);
    }
    return { late_ms: out, missing: p.n - out.length };
  },
  async memory(queue, redis, p) {
    const payload = p.payload;
    for (let i = 0; i < 100; i++) await queue.add('noop', { arg: payload }, JOB_OPTS);
    const used = async () => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))[1]);
    const before = await used();
    for (let i = 0; i < p.n; i += CHUNK) {
      const jobs = [];
      for (let j = 0; j < Math.min(CHUNK, p.n - i); j++) jobs.push({ name: 'noop', data: { arg: payload }, opts: JOB_OPTS });
      await queue.addBulk(jobs);
    }
    return { n: p.n, bytes_per_task: ((await used()) - before) / p.n };
  },
  async caps() {
    return { bulk: true, delayed: true, bulk_delayed: true };
  },
  async warm(queue, redis, p) {
    await warmUp(queue, redis, Boolean(p.stamp));
    return { ok: true };
  },
};

async function produce(action, raw) {
  const queue = new Queue(QUEUE, { connection: connection() });
  const redis = new IORedis(connection());
  try {
    const result = await actions[action](queue, redis, JSON.parse(raw));
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    await queue.close();
    redis.disconnect();
  }
}

const [mode, action, raw] = process.argv.slice(2);
if (mode === 'worker') worker();
else produce(action, raw).then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
