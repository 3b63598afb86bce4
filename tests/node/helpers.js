'use strict'
// Shared helpers for the kafkajs end-to-end suite: run a real `floe` process, build kafkajs
// clients with every available codec registered, and read topics back byte-exactly with an
// independent client (confluent-kafka / librdkafka, see read_back.py).

const { spawn, execFile } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const crypto = require('node:crypto')
const assert = require('node:assert/strict')

const { Kafka, logLevel, CompressionTypes, CompressionCodecs, Partitioners } = require('kafkajs')

const REPO_ROOT = path.resolve(__dirname, '..', '..')
const START_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 20_000
const INIT_TIMEOUT_MS = 60_000
const AWS_REGION = 'us-east-1'
const AWS_ENV_DEFAULTS = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_REGION }

// Backend of the brokers under test: embedded by default; FLOE_TEST_BACKEND=aws gives every
// Floe its own S3 bucket and DynamoDB table (`floe-node-<hex>`) on the moto server named by
// FLOE_TEST_MOTO_ENDPOINT, created by `floe init` before the first start and reused by every
// restart (same durable state, as on the embedded backend's data dir).
function testBackend () {
  const backend = process.env.FLOE_TEST_BACKEND || 'embedded'
  if (backend !== 'embedded' && backend !== 'aws') {
    throw new Error(`FLOE_TEST_BACKEND=${backend}: expected 'embedded' or 'aws'`)
  }
  if (backend === 'aws' && !process.env.FLOE_TEST_MOTO_ENDPOINT) {
    throw new Error('FLOE_TEST_BACKEND=aws needs FLOE_TEST_MOTO_ENDPOINT (the moto server): ' +
      'eval "$(localstack/emulators.sh start)"')
  }
  return backend
}

// ---------------------------------------------------------------- codecs
// kafkajs ships GZIP only; the others are plug-ins. All three install without a native
// build: snappyjs is pure JavaScript, lz4-napi and @mongodb-js/zstd ship prebuilt
// binaries inside per-platform npm packages.
const SnappyCodec = require('kafkajs-snappy')
const LZ4Codec = require('@2l/kafkajs-lz4')
const zstd = require('@mongodb-js/zstd')

CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec
CompressionCodecs[CompressionTypes.LZ4] = new LZ4Codec().codec
// Thin adapter: kafkajs' codec interface is () => { compress(encoder), decompress(buffer) }.
CompressionCodecs[CompressionTypes.ZSTD] = () => ({
  compress: async encoder => zstd.compress(encoder.buffer, 3),
  decompress: async buffer => zstd.decompress(buffer),
})

const CODECS = [
  ['none', CompressionTypes.None],
  ['gzip', CompressionTypes.GZIP],
  ['snappy', CompressionTypes.Snappy],
  ['lz4', CompressionTypes.LZ4],
  ['zstd', CompressionTypes.ZSTD],
]

// ---------------------------------------------------------------- broker
function floeBin () {
  const p = path.resolve(REPO_ROOT, process.env.FLOE_BIN || 'target/debug/floe')
  try {
    fs.accessSync(p, fs.constants.X_OK)
  } catch {
    throw new Error(`floe binary not executable: ${p} (set FLOE_BIN or build it)`)
  }
  return p
}

function canConnect (port) {
  return new Promise(resolve => {
    const s = net.createConnection({ host: '127.0.0.1', port })
    s.setTimeout(500)
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
    s.once('timeout', () => { s.destroy(); resolve(false) })
  })
}

function portFree (port) {
  return new Promise(resolve => {
    const srv = net.createServer()
    srv.once('error', () => resolve(false))
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)))
  })
}

// The first of `count` consecutive free ports (a gateway with --broker-ids listens on each) in
// 20000..31999, spread by pid so parallel test files rarely collide.
async function pickPort (count = 1) {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + ((process.pid * 7 + crypto.randomInt(12000 - count)) % (12000 - count))
    let free = true
    for (let p = port; free && p < port + count; p++) free = await portFree(p)
    if (free) return port
  }
  throw new Error(`no ${count} free ports in 20000..31999`)
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

class Floe {
  // advertisedPort: tell clients another port (e.g. a recording proxy in front of floe)
  constructor (extraArgs = [], { advertisedPort } = {}) {
    this.bin = floeBin()
    this.extraArgs = extraArgs
    this.advertisedPort = advertisedPort
    this.workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'floe-node-'))
    this.dataDir = path.join(this.workdir, 'data')
    fs.mkdirSync(this.dataDir)
    this.logPath = path.join(this.workdir, 'floe.log')
    this.proc = null
    this.starts = 0
    this.backend = testBackend()
    this.awsName = this.backend === 'aws' ? `floe-node-${crypto.randomBytes(6).toString('hex')}` : null
    this.awsInitialized = false
  }

  get bootstrap () { return `127.0.0.1:${this.port}` }

  backendArgs () {
    if (this.backend !== 'aws') return []
    return [
      '--backend', 'aws',
      '--bucket', this.awsName,
      '--table', this.awsName,
      '--endpoint-url', process.env.FLOE_TEST_MOTO_ENDPOINT,
      '--region', AWS_REGION,
    ]
  }

  args () {
    return [
      '--listen', this.bootstrap,
      '--advertised-listener', `127.0.0.1:${this.advertisedPort || this.port}`,
      '--data-dir', this.dataDir,
      '--flush-interval', '2ms',
      '--log-level', 'warn',
      ...this.backendArgs(),
      ...this.extraArgs,
    ]
  }

  // FLOE_* variables would override floe's settings (and FLOE_BIN is ours): flags alone decide.
  childEnv () {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLOE_')))
    if (this.backend === 'aws') {
      for (const [k, v] of Object.entries(AWS_ENV_DEFAULTS)) if (!env[k]) env[k] = v
    }
    return env
  }

  // aws: create this broker's bucket and table (`floe init`), once.
  async initBackend () {
    if (this.backend !== 'aws' || this.awsInitialized) return
    const args = ['init', ...this.backendArgs()]
    const cmd = `${this.bin} ${args.join(' ')}`
    const { status, out } = await new Promise(resolve => {
      execFile(this.bin, args, { env: this.childEnv(), timeout: INIT_TIMEOUT_MS }, (err, stdout, stderr) => {
        const status = !err ? 'exit 0' : err.killed ? `killed after ${INIT_TIMEOUT_MS} ms` : `exit ${err.code ?? err.signal}`
        resolve({ status, out: `${stdout}${stderr}` })
      })
    })
    fs.appendFileSync(this.logPath, `\n===== init: ${cmd} (${status})\n${out}`)
    if (status !== 'exit 0') throw new Error(`floe init failed (${status}): ${cmd}\n${out}`)
    this.awsInitialized = true
  }

  logTail (lines = 60) {
    try {
      return fs.readFileSync(this.logPath, 'utf8').split('\n').slice(-lines).join('\n')
    } catch {
      return '<no broker log>'
    }
  }

  running () { return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null }

  async start () {
    assert.ok(!this.running(), 'broker already running')
    const ids = this.extraArgs.indexOf('--broker-ids')
    if (this.port === undefined) this.port = await pickPort(ids >= 0 ? Number(this.extraArgs[ids + 1]) : 1)
    await this.initBackend()
    this.starts++
    fs.appendFileSync(this.logPath, `\n===== start #${this.starts}: ${this.bin} ${this.args().join(' ')}\n`)
    const log = fs.openSync(this.logPath, 'a')
    const proc = spawn(this.bin, this.args(), { stdio: ['ignore', log, log], cwd: this.workdir, env: this.childEnv() })
    fs.closeSync(log)
    this.proc = proc
    this.exited = new Promise(resolve => proc.once('exit', (code, signal) => resolve({ code, signal })))
    const deadline = Date.now() + START_TIMEOUT_MS
    for (;;) {
      if (!this.running()) {
        throw new Error(`floe exited during startup (code ${proc.exitCode}, signal ${proc.signalCode})\n` +
          `--- broker log ---\n${this.logTail()}`)
      }
      if (await canConnect(this.port)) return
      if (Date.now() > deadline) {
        proc.kill('SIGKILL')
        throw new Error(`floe did not accept TCP on ${this.bootstrap} within ${START_TIMEOUT_MS} ms\n` +
          `--- broker log ---\n${this.logTail()}`)
      }
      await sleep(25)
    }
  }

  // SIGTERM and wait; resolves to { code, signal }. SIGKILL after STOP_TIMEOUT_MS.
  async stop () {
    if (!this.running()) return this.proc ? { code: this.proc.exitCode, signal: this.proc.signalCode } : null
    this.proc.kill('SIGTERM')
    const timer = setTimeout(() => { if (this.running()) this.proc.kill('SIGKILL') }, STOP_TIMEOUT_MS)
    const res = await this.exited
    clearTimeout(timer)
    return res
  }

  async stopOk () {
    const res = await this.stop()
    assert.deepEqual(res, { code: 0, signal: null },
      `floe did not exit 0 on SIGTERM: ${JSON.stringify(res)}\n--- broker log ---\n${this.logTail()}`)
  }

  async restart () {
    await this.stopOk()
    await this.start()
  }

  async cleanup () {
    if (this.running()) await this.stop()
    fs.rmSync(this.workdir, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------- several gateways
// Gateway flags of a cluster: membership heartbeats every 200ms and a gateway that stops
// heartbeating for 1.5s is gone (its partitions and groups move to the others).
const CLUSTER_FLAGS = ['--heartbeat-interval', '200ms', '--session-timeout', '1500ms', '--checkpoint-interval', '1s']

// A Floe that logs at info (membership changes, claims, fencing, group generations), not warn;
// FLOE_TEST_LOG_LEVEL overrides.
class Gateway extends Floe {
  args () {
    const a = super.args()
    a[a.indexOf('--log-level') + 1] = process.env.FLOE_TEST_LOG_LEVEL || 'info'
    return a
  }
}

// Gateways gw-N (node id N) sharing one data dir, or one bucket and table on aws.
class Cluster {
  constructor (extraArgs = []) {
    this.shared = fs.mkdtempSync(path.join(os.tmpdir(), 'floe-node-cluster-'))
    this.extraArgs = extraArgs
    this.gateways = new Map()
    this.killed = new Set()
    this.awsName = null
  }

  async start (n) {
    const gw = new Gateway(['--gateway-id', `gw-${n}`, '--node-id', String(n), ...CLUSTER_FLAGS, ...this.extraArgs])
    gw.dataDir = this.shared
    if (gw.backend === 'aws') {
      // the first gateway runs `floe init`; the others use its bucket and table
      gw.awsInitialized = this.awsName !== null
      this.awsName = this.awsName || gw.awsName
      gw.awsName = this.awsName
    }
    this.gateways.set(n, gw)
    await gw.start()
    return gw
  }

  bootstrap (nodes) { return nodes.map(n => this.gateways.get(n).bootstrap) }

  async kill9 (n) {
    const gw = this.gateways.get(n)
    this.killed.add(n)
    gw.proc.kill('SIGKILL')
    await gw.exited
  }

  logTails (lines = 40) {
    return [...this.gateways].map(([n, gw]) => `--- gw-${n} log tail (${gw.logPath}) ---\n${gw.logTail(lines)}`).join('\n')
  }

  // SIGTERM every gateway that should be running; returns the problems (a gateway that died by
  // itself, or one that did not exit 0).
  async shutdown () {
    const problems = []
    await Promise.all([...this.gateways].map(async ([n, gw]) => {
      if (this.killed.has(n) || !gw.proc) return
      if (!gw.running()) {
        problems.push(`gw-${n} died during the test (code ${gw.proc.exitCode}, signal ${gw.proc.signalCode})`)
        return
      }
      const res = await gw.stop()
      if (res.code !== 0) problems.push(`gw-${n} did not exit 0 on SIGTERM: ${JSON.stringify(res)}`)
    }))
    return problems
  }

  // Removes every directory; kept (and returned) when `keep` (a failure, or FLOE_TEST_KEEP_LOGS set).
  cleanup (keep) {
    if (keep) return [this.shared, ...[...this.gateways.values()].map(g => g.workdir)]
    for (const gw of this.gateways.values()) fs.rmSync(gw.workdir, { recursive: true, force: true })
    fs.rmSync(this.shared, { recursive: true, force: true })
    return []
  }
}

// Runs fn(cluster) on a fresh Cluster, always shut down afterwards: on failure the kafkajs log
// tail and every gateway's log tail are attached to the error and the logs are kept; a gateway
// that died by itself or did not exit 0 on SIGTERM fails the test.
async function withCluster (fn, extraArgs = []) {
  const cluster = new Cluster(extraArgs)
  let failed = false
  try {
    return await fn(cluster)
  } catch (err) {
    failed = true
    const extra = `\n--- kafkajs log tail (DEBUG) ---\n${kafkaLogTail()}\n${cluster.logTails()}`
    try { err.message += extra } catch { console.error(extra) }
    throw err
  } finally {
    const problems = await cluster.shutdown()
    const kept = cluster.cleanup(failed || problems.length > 0 || !!process.env.FLOE_TEST_KEEP_LOGS)
    if (kept.length) console.error(`gateway logs kept in ${kept.join(' ')}`)
    if (!failed) assert.deepEqual(problems, [], `${problems.join('; ')}\n${cluster.logTails()}`)
  }
}

// {partition: leader node id}, once the cluster lists exactly the brokers `nodes` and each of the
// topic's `partitions` is led by one of them.
async function waitForLeaders (admin, topic, partitions, nodes, timeoutMs = 20_000) {
  const want = [...nodes].sort().join(',')
  const deadline = Date.now() + timeoutMs
  let last
  for (;;) {
    try {
      const { brokers } = await admin.describeCluster()
      const [t] = (await admin.fetchTopicMetadata({ topics: [topic] })).topics
      const leaders = Object.fromEntries(t.partitions.map(p => [p.partitionId, p.leader]))
      last = { brokers: brokers.map(b => b.nodeId).sort(), leaders }
      if (last.brokers.join(',') === want && t.partitions.length === partitions &&
          Object.values(leaders).every(l => nodes.includes(l))) return leaders
    } catch (e) {
      last = e.message
    }
    if (Date.now() > deadline) throw new Error(`${topic}: no view with brokers [${want}] all leading; last ${JSON.stringify(last)}`)
    await sleep(200)
  }
}

// ---------------------------------------------------------------- kafkajs clients
// kafkajs logs go to a ring buffer at DEBUG level (every request/response), dumped when a test
// fails; KAFKAJS_LOG=debug|info|warn|error prints them live instead.
const LEVEL_NAMES = { [logLevel.ERROR]: 'ERROR', [logLevel.WARN]: 'WARN', [logLevel.INFO]: 'INFO', [logLevel.DEBUG]: 'DEBUG' }
const ring = []
const requestsSeen = new Set() // kafkajs API names sent at least once (from its DEBUG log)
const RING_MAX = 400
const liveLevel = process.env.KAFKAJS_LOG ? logLevel[process.env.KAFKAJS_LOG.toUpperCase()] : undefined

function logCreator () {
  return ({ namespace, level, log }) => {
    const { message, timestamp, ...extra } = log
    const req = /^Request (\w+)\(/.exec(message)
    if (req) requestsSeen.add(req[1])
    const line = `${timestamp} ${LEVEL_NAMES[level]} [${namespace}] ${message} ${JSON.stringify(extra)}`
    if (liveLevel !== undefined) {
      if (level <= liveLevel) console.error(line)
      return
    }
    ring.push(line.length > 800 ? line.slice(0, 800) + '…' : line)
    if (ring.length > RING_MAX) ring.shift()
  }
}

function kafkaLogTail (n = 40) { return ring.slice(-n).join('\n') }

function kafka (floe, opts = {}) {
  return new Kafka({
    clientId: 'floe-kafkajs-e2e',
    brokers: [floe.bootstrap],
    logLevel: liveLevel !== undefined ? liveLevel : logLevel.DEBUG,
    logCreator,
    connectionTimeout: 3000,
    requestTimeout: 15000,
    retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: 8 },
    ...opts,
  })
}

function producer (client, opts = {}) {
  return client.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false, ...opts })
}

// Consumer-group timings for tests: the smallest session timeout Floe (like Kafka) accepts, 6s;
// a heartbeat every 500ms; fetches that wait at most 250ms for data (kafkajs heartbeats between
// fetches, so it notices a rebalance quickly); a rebalance that waits at most 10s for members.
const CONSUMER_DEFAULTS = { sessionTimeout: 6000, heartbeatInterval: 500, rebalanceTimeout: 10_000, maxWaitTimeInMs: 250 }

function consumer (client, opts) {
  return client.consumer({ ...CONSUMER_DEFAULTS, ...opts })
}

// Run fn; on failure attach the kafkajs log tail and broker log tail to the error.
async function withDiagnostics (floe, fn) {
  try {
    return await fn()
  } catch (err) {
    const extra = `\n--- kafkajs log tail (DEBUG) ---\n${kafkaLogTail()}\n--- floe log tail ---\n${floe.logTail(40)}`
    try { err.message += extra } catch { console.error(extra) }
    throw err
  }
}

// ---------------------------------------------------------------- read-back
const PYTHON = process.env.FLOE_NODE_PYTHON || path.join(REPO_ROOT, 'tests', 'python', '.venv', 'bin', 'python')

// All records of `topic` via confluent-kafka, decoded to Buffers: { partition: [row...] }, each
// partition's rows in offset order.
function readBack (floe, topic, timeoutS = 30) {
  return new Promise((resolve, reject) => {
    execFile(PYTHON, [path.join(__dirname, 'read_back.py'), floe.bootstrap, topic, String(timeoutS)],
      { maxBuffer: 512 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (err) return reject(new Error(`read_back.py ${topic} failed (${PYTHON}): ${err.message}\n${stderr}`))
        const byPart = {}
        for (const line of stdout.split('\n')) {
          if (!line) continue
          const r = JSON.parse(line)
          const dec = v => (v === null ? null : Buffer.from(v, 'base64'))
          const row = {
            partition: r.partition,
            offset: r.offset,
            key: dec(r.key),
            value: dec(r.value),
            headers: r.headers.map(([k, v]) => [k, dec(v)]),
            timestamp: r.timestamp,
            timestampType: r.timestampType,
          }
          ;(byPart[r.partition] ||= []).push(row)
        }
        for (const rows of Object.values(byPart)) rows.sort((a, b) => a.offset - b.offset)
        resolve(byPart)
      })
  })
}

// ---------------------------------------------------------------- test data
const BASE_TS = 1_700_000_000_000 // explicit CreateTime base (2023-11-14T22:13:20Z)

// Deterministic messages with keys, headers (incl. duplicate names and empty values),
// explicit increasing timestamps, random and repetitive values, a tombstone and an empty value.
// Each message carries header `idx` so read-back rows can be matched to what was sent.
function makeMessages (n, { seed = 1, tag = 't', nKeys = 50, baseTs = BASE_TS, partition } = {}) {
  let state = seed >>> 0 || 1
  const rnd = () => { state ^= state << 13; state >>>= 0; state ^= state >>> 17; state ^= state << 5; state >>>= 0; return state }
  const bytes = len => { const b = Buffer.alloc(len); for (let i = 0; i < len; i++) b[i] = rnd() & 0xff; return b }
  const out = []
  for (let i = 0; i < n; i++) {
    let value
    if (i % 100 === 99) value = null
    else if (i % 100 === 50) value = Buffer.alloc(0)
    else value = Buffer.concat([bytes(rnd() % 48), Buffer.from(`floe-${tag}-${i}|`.repeat(rnd() % 12))])
    const headers = { idx: Buffer.from(String(i)), tag: Buffer.from(tag), bin: bytes(rnd() % 8), empty: Buffer.alloc(0) }
    if (i % 7 === 0) headers.dup = [Buffer.from('a'), Buffer.from('b')]
    const m = { key: Buffer.from(`key-${rnd() % nKeys}`), value, headers, timestamp: String(baseTs + i) }
    if (partition !== undefined) m.partition = typeof partition === 'function' ? partition(i) : partition
    out.push(m)
  }
  return out
}

// Expected read-back form of a kafkajs header object: [[name, Buffer], ...] in insertion order,
// arrays expanded in order.
function flatHeaders (headers) {
  const out = []
  for (const [k, v] of Object.entries(headers || {})) {
    for (const x of Array.isArray(v) ? v : [v]) out.push([k, Buffer.isBuffer(x) ? x : Buffer.from(String(x))])
  }
  return out
}

const asBuf = v => (v === null || v === undefined ? null : Buffer.isBuffer(v) ? v : Buffer.from(String(v)))
const hex = b => (b === null ? null : b.toString('hex'))

/**
 * Check a topic read back with readBack() against what kafkajs sent.
 *   sends: [{ messages, result }]   in send order; result = producer.send()'s RecordMetadata[]
 * Asserts, per partition: offsets are exactly 0..n-1; every sent message is there exactly once,
 * byte-exact (key, value, headers, CreateTime timestamp); each send's messages for a partition
 * sit at result.baseOffset, baseOffset+1, ... in send order; each key maps to one partition.
 */
function verifyTopic (readback, sends, { expectTimestamps = true, what = '' } = {}) {
  const total = sends.reduce((s, x) => s + x.messages.length, 0)
  let got = 0
  const rowsById = new Map() // `${sendIdx}:${msgIdx}` -> row
  for (const [p, rows] of Object.entries(readback)) {
    rows.forEach((r, i) => assert.equal(r.offset, i, `${what} partition ${p}: offset ${r.offset} at position ${i} (not contiguous from 0)`))
    got += rows.length
    for (const r of rows) {
      const sid = r.headers.find(([k]) => k === 'sid')
      const idx = r.headers.find(([k]) => k === 'idx')
      assert.ok(sid && idx, `${what} partition ${p} offset ${r.offset}: no sid/idx header`)
      const id = `${sid[1].toString()}:${idx[1].toString()}`
      assert.ok(!rowsById.has(id), `${what} message ${id} read twice (duplicate)`)
      rowsById.set(id, r)
    }
  }
  assert.equal(got, total, `${what} read back ${got} records, sent ${total}`)
  const keyPart = new Map()
  sends.forEach(({ messages, result }, s) => {
    const nextInPart = new Map()
    for (const md of result) {
      assert.equal(md.errorCode, 0, `${what} send ${s} partition ${md.partition} errorCode ${md.errorCode}`)
      nextInPart.set(md.partition, Number(md.baseOffset))
    }
    messages.forEach((m, i) => {
      const r = rowsById.get(`${s}:${i}`)
      assert.ok(r, `${what} send ${s} message ${i} missing from read-back`)
      const where = `${what} send ${s} msg ${i} (partition ${r.partition} offset ${r.offset})`
      if (m.partition !== undefined) assert.equal(r.partition, m.partition, `${where}: wrong partition`)
      assert.ok(nextInPart.has(r.partition), `${where}: send result has no entry for partition ${r.partition}`)
      assert.equal(r.offset, nextInPart.get(r.partition), `${where}: not at the offset the send result implies`)
      nextInPart.set(r.partition, r.offset + 1)
      assert.equal(hex(r.key), hex(asBuf(m.key)), `${where}: key`)
      assert.equal(hex(r.value), hex(asBuf(m.value)), `${where}: value`)
      assert.deepEqual(r.headers.map(([k, v]) => [k, hex(v)]), flatHeaders(m.headers).map(([k, v]) => [k, hex(v)]), `${where}: headers`)
      if (expectTimestamps && m.timestamp !== undefined) {
        assert.equal(r.timestampType, 1, `${where}: timestamp type ${r.timestampType}, want CreateTime (1)`)
        assert.equal(r.timestamp, Number(m.timestamp), `${where}: timestamp`)
      }
      if (m.key !== null && m.key !== undefined && m.partition === undefined) {
        const k = hex(asBuf(m.key))
        if (!keyPart.has(k)) keyPart.set(k, r.partition)
        assert.equal(r.partition, keyPart.get(k), `${where}: key ${asBuf(m.key)} landed in two partitions`)
      }
    })
  })
}

// Tag messages with the send index so verifyTopic can match rows (header `sid` goes first).
function tagSend (messages, sid) {
  return messages.map(m => ({ ...m, headers: { sid: Buffer.from(String(sid)), ...m.headers } }))
}

let topicSeq = 0
const uniqueTopic = name => `${name}-${process.pid}-${++topicSeq}`

module.exports = {
  Floe, Gateway, Cluster, withCluster, waitForLeaders, CLUSTER_FLAGS, pickPort,
  kafka, producer, consumer, CONSUMER_DEFAULTS, withDiagnostics, kafkaLogTail, requestsSeen,
  readBack, verifyTopic, tagSend, makeMessages, flatHeaders, uniqueTopic, sleep, CODECS, BASE_TS, REPO_ROOT,
  CompressionTypes,
}
