#!/usr/bin/env node
// graphile-worker measured the way its own perfTest does (perfTest/run.js, init.js and
// latencyTest.js in github.com/graphile/worker), on the database named by DATABASE_URL:
//
// - drain: JOBS no-op jobs added first with one `add_jobs` call, then WORKERS processes each
//   run `runOnce` with CONCURRENCY jobs at a time; jobs/s from the first job started to the
//   last process done. Once unbatched (the default, as in the published ~15.6k jobs/s), once
//   with the batching options of the perfTest preset (local queue of 500, completions batched).
// - concurrent: WORKERS processes run (unbatched) while CREATORS connections each call
//   `add_job` one job at a time until JOBS were added; jobs/s from the first add until the
//   queue is empty.
// - latency: one worker in this process (CONCURRENCY, unbatched); SAMPLES times, add one job
//   from one connection and time until its task function runs, waiting for it before the next.
//
// Progress goes to stderr; the figures are one JSON object on stdout.
// Run: DATABASE_URL=postgres://… JOBS=10000 SAMPLES=1000 WORKERS=2 CONCURRENCY=24 CREATORS=32 node bench.js

"use strict";

// Read by graphile-worker when it loads: no log line per completed job (as in perfTest).
process.env.NO_LOG_SUCCESS = "1";

const { fork } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const { performance } = require("node:perf_hooks");
const { Pool } = require("pg");
const { Logger, run, runMigrations, runOnce, runTaskList } = require("graphile-worker");

const TASK = "noop";
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
/** Milliseconds on a clock shared by every process of the machine. */
const now = () => performance.timeOrigin + performance.now();

function number(name, fallback) {
  const value = Number.parseInt(process.env[name] ?? "", 10);
  return Number.isFinite(value) && value > 0 ? value : fallback;
}

const databaseUrl = process.env.DATABASE_URL;
const JOBS = number("JOBS", 10000);
const SAMPLES = number("SAMPLES", 1000);
const WORKERS = number("WORKERS", 2);
const CONCURRENCY = number("CONCURRENCY", 24);
const CREATORS = number("CREATORS", 32);
/** The unbatched drain (the figure compared with the orchestrator's) is the best of these. */
const ROUNDS = number("ROUNDS", 1);
const TIMEOUT_MS = number("TIMEOUT_MS", 600000);

// Errors and warnings only, on stderr.
const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") {
    console.error(`graphile-worker ${level}: ${message}`);
  }
});

/** The perfTest preset: unbatched is graphile-worker's default, batched its fast setting. */
function preset(mode) {
  const worker = {
    concurrentJobs: CONCURRENCY,
    maxPoolSize: CONCURRENCY + 1,
    gracefulShutdownAbortTimeout: 2500,
  };
  if (mode === "batched") {
    Object.assign(worker, {
      localQueue: { size: 500, refetchDelay: { durationMs: 10 } },
      completeJobBatchDelay: 0,
      failJobBatchDelay: 0,
    });
  } else {
    Object.assign(worker, {
      localQueue: { size: -1 },
      completeJobBatchDelay: -1,
      failJobBatchDelay: -1,
    });
  }
  return { worker };
}

function options(mode) {
  return {
    connectionString: databaseUrl,
    logger,
    noHandleSignals: true,
    preset: preset(mode),
  };
}

function installedVersion() {
  const file = path.join(path.dirname(require.resolve("graphile-worker")), "..", "package.json");
  return JSON.parse(fs.readFileSync(file, "utf8")).version;
}

/** Reports to the parent, then exits (an open IPC channel would keep the process alive). */
function report(message) {
  process.send(message, () => process.exit(0));
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const index = Math.round((sorted.length - 1) * p);
  return sorted[Math.min(index, sorted.length - 1)];
}

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took more than ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---- child processes: one graphile-worker instance each --------------------------------------

async function child(role, mode) {
  let first = null;
  let ran = 0;
  const taskList = {
    [TASK]: () => {
      if (first === null) first = now();
      ran += 1;
    },
  };
  if (role === "once") {
    await runOnce({ ...options(mode), taskList });
    report({ first, end: now(), ran });
  } else {
    const runner = await run({ ...options(mode), taskList });
    process.on("message", (message) => {
      if (message === "stop") {
        runner.stop().then(() => report({ first, end: now(), ran }));
      }
    });
    process.send("ready");
    await runner.promise;
  }
}

/** Starts WORKERS children; resolves with each one's report once all have exited. */
function spawnWorkers(role, mode) {
  const children = [];
  const reports = [];
  const ready = [];
  const exited = [];
  for (let i = 0; i < WORKERS; i++) {
    const worker = fork(__filename, ["child", role, mode], {
      env: process.env,
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    children.push(worker);
    ready.push(
      new Promise((resolve) => {
        worker.on("message", (message) => {
          if (message === "ready") resolve();
          else reports.push(message);
        });
      }),
    );
    exited.push(
      new Promise((resolve, reject) => {
        worker.on("exit", (code) =>
          code === 0 ? resolve() : reject(new Error(`worker ${i} exited with ${code}`)),
        );
      }),
    );
  }
  return {
    ready: Promise.all(ready),
    stop: () => children.forEach((worker) => worker.send("stop")),
    done: Promise.all(exited).then(() => reports),
  };
}

function throughput(reports, expected, started) {
  const ran = reports.reduce((sum, r) => sum + r.ran, 0);
  if (ran !== expected) {
    throw new Error(`expected ${expected} jobs to run, ${ran} did`);
  }
  const from = started ?? Math.min(...reports.map((r) => r.first).filter((t) => t !== null));
  const to = Math.max(...reports.map((r) => r.end));
  const secs = (to - from) / 1000;
  return { jobs: expected, secs, jobsPerSec: expected / secs };
}

async function queueEmpty(pool) {
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    const { rows } = await pool.query(
      "select exists(select 1 from graphile_worker._private_jobs) as busy",
    );
    if (!rows[0].busy) return now();
    if (Date.now() > deadline) throw new Error("the queue did not empty in time");
    await sleep(5);
  }
}

// ---- the measurements ------------------------------------------------------------------------

async function addAll(pool) {
  const jobs = [];
  for (let i = 0; i < JOBS; i++) jobs.push({ identifier: TASK, payload: { id: i } });
  const started = now();
  await pool.query(
    "select 1 from graphile_worker.add_jobs(array(select json_populate_recordset(null::graphile_worker.job_spec, $1::json)))",
    [JSON.stringify(jobs)],
  );
  return JOBS / ((now() - started) / 1000);
}

async function drain(pool, mode) {
  const addRate = await addAll(pool);
  console.error(`graphile-worker: ${JOBS} jobs added; draining (${mode})`);
  const workers = spawnWorkers("once", mode);
  const reports = await withTimeout(workers.done, `draining (${mode})`);
  if (await pool.query("select 1 from graphile_worker._private_jobs limit 1").then((r) => r.rowCount)) {
    throw new Error("jobs left after every worker finished");
  }
  return { ...throughput(reports, JOBS), addJobsPerSec: addRate };
}

async function concurrent(pool) {
  const workers = spawnWorkers("serve", "unbatched");
  await withTimeout(workers.ready, "starting the workers");
  await sleep(500);
  console.error(`graphile-worker: ${CREATORS} connections adding ${JOBS} jobs while ${WORKERS} workers run`);
  let next = 0;
  const started = now();
  const creators = [];
  for (let c = 0; c < CREATORS; c++) {
    creators.push(
      (async () => {
        const client = await pool.connect();
        try {
          while (next < JOBS) {
            const id = next++;
            await client.query("select graphile_worker.add_job($1, json_build_object('id', $2::int))", [TASK, id]);
          }
        } finally {
          client.release();
        }
      })(),
    );
  }
  await withTimeout(Promise.all(creators), "adding jobs");
  const createSecs = (now() - started) / 1000;
  const emptied = await queueEmpty(pool);
  workers.stop();
  const reports = await withTimeout(workers.done, "stopping the workers");
  const result = throughput(reports, JOBS, started);
  // The queue emptied before the workers were told to stop.
  result.secs = (emptied - started) / 1000;
  result.jobsPerSec = JOBS / result.secs;
  return { ...result, createsPerSec: JOBS / createSecs };
}

async function latency() {
  const pgPool = new Pool({ connectionString: databaseUrl, max: CONCURRENCY + 2 });
  const starts = new Map();
  const waiting = new Map();
  let latencies = [];
  const tasks = {
    [TASK]: ({ id }) => {
      if (starts.has(id)) latencies.push(now() - starts.get(id));
      const resolve = waiting.get(id);
      if (resolve) resolve();
    },
  };
  const workerPool = runTaskList(
    { logger, noHandleSignals: true, preset: preset("unbatched") },
    tasks,
    pgPool,
  );
  try {
    // Warm up, as latencyTest.js does.
    await pgPool.query(
      `select graphile_worker.add_job('${TASK}', json_build_object('id', -i)) from generate_series(1, 100) i`,
    );
    await queueEmpty(pgPool);
    await sleep(1000);
    latencies = [];
    console.error(`graphile-worker: latency, ${SAMPLES} jobs one at a time`);
    const client = await pgPool.connect();
    try {
      for (let id = 0; id < SAMPLES; id++) {
        const ran = new Promise((resolve) => waiting.set(id, resolve));
        starts.set(id, now());
        await client.query("select graphile_worker.add_job($1, json_build_object('id', $2::int))", [TASK, id]);
        await withTimeout(ran, `job ${id}`);
        waiting.delete(id);
      }
    } finally {
      client.release();
    }
    await queueEmpty(pgPool);
  } finally {
    await workerPool.gracefulShutdown();
    await pgPool.end();
  }
  if (latencies.length !== SAMPLES) {
    throw new Error(`expected ${SAMPLES} latencies, got ${latencies.length}`);
  }
  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    samples: SAMPLES,
    avgMs: sorted.reduce((sum, x) => sum + x, 0) / sorted.length,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    minMs: sorted[0],
    maxMs: sorted[sorted.length - 1],
  };
}

async function main() {
  if (!databaseUrl) throw new Error("DATABASE_URL is not set");
  await runMigrations({ connectionString: databaseUrl, logger });
  const pool = new Pool({ connectionString: databaseUrl, max: CREATORS + 1 });
  try {
    const { rows } = await pool.query("select version() as version");
    const result = {
      graphileWorker: installedVersion(),
      node: process.version,
      postgres: rows[0].version,
      jobs: JOBS,
      workers: WORKERS,
      concurrency: CONCURRENCY,
      creators: CREATORS,
    };
    const rounds = [];
    for (let round = 0; round < ROUNDS; round++) rounds.push(await drain(pool, "unbatched"));
    const best = rounds.reduce((a, b) => (b.jobsPerSec > a.jobsPerSec ? b : a));
    result.drainUnbatched = { ...best, rounds: rounds.map((r) => r.jobsPerSec) };
    result.drainBatched = await drain(pool, "batched");
    result.concurrent = await concurrent(pool);
    result.latency = await latency();
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await pool.end();
  }
}

if (process.argv[2] === "child") {
  child(process.argv[3], process.argv[4]).catch((error) => {
    console.error(error);
    process.exit(1);
  });
} else {
  main().then(
    () => process.exit(0),
    (error) => {
      console.error(error);
      process.exit(1);
    },
  );
}
