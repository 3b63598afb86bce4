'use strict'
// Three floe gateways on one backend (a shared data dir, or one bucket + table with
// FLOE_TEST_BACKEND=aws) split a 6-partition topic. A kafkajs idempotent producer writes to every
// partition while the gateway leading the most partitions is SIGKILLed; its partitions move to the
// other two after the session timeout (1500ms). Every send() must succeed, and the topic, read
// back on the survivors with confluent-kafka (read_back.py), must hold every message exactly once,
// byte-exact, at the offsets kafkajs was told, with contiguous offsets (verifyTopic).
//
// Two load shapes: one sequential sender per partition (each send() to one partition, so a
// partition waiting for its new leader does not hold up the others), and one sender whose send()s
// spread over every partition by key (kafkajs groups them per leader and, on retry, re-sends only
// to the brokers that have not answered that send() yet; marked todo, see there).

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { Partitioners } = require('kafkajs')
const {
  Floe, kafka, producer, kafkaLogTail, readBack, verifyTopic, tagSend, makeMessages, uniqueTopic, sleep, BASE_TS,
} = require('../helpers')

const PARTITIONS = 6
const CLUSTER_FLAGS = ['--heartbeat-interval', '200ms', '--session-timeout', '1500ms', '--checkpoint-interval', '1s']

// A Floe that logs at info (membership changes, claims, fencing), not warn.
class Gateway extends Floe {
  args () {
    const a = super.args()
    a[a.indexOf('--log-level') + 1] = process.env.FLOE_TEST_LOG_LEVEL || 'info'
    return a
  }
}

// Gateways gw-N (node id N) sharing one data dir, or one bucket and table on aws.
class Cluster {
  constructor () {
    this.shared = fs.mkdtempSync(path.join(os.tmpdir(), 'floe-node-cluster-'))
    this.gateways = new Map()
    this.killed = new Set()
    this.awsName = null
  }

  async start (n) {
    const gw = new Gateway(['--gateway-id', `gw-${n}`, '--node-id', String(n), ...CLUSTER_FLAGS])
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

// {partition: leader node id} and the broker ids, once the cluster lists exactly `nodes` and
// every partition is led by one of them.
async function waitForLeaders (admin, topic, nodes, timeoutMs = 20_000) {
  const want = [...nodes].sort().join(',')
  const deadline = Date.now() + timeoutMs
  let last
  for (;;) {
    try {
      const { brokers } = await admin.describeCluster()
      const [t] = (await admin.fetchTopicMetadata({ topics: [topic] })).topics
      const leaders = Object.fromEntries(t.partitions.map(p => [p.partitionId, p.leader]))
      last = { brokers: brokers.map(b => b.nodeId).sort(), leaders }
      if (last.brokers.join(',') === want && t.partitions.length === PARTITIONS &&
          Object.values(leaders).every(l => nodes.includes(l))) return leaders
    } catch (e) {
      last = e.message
    }
    if (Date.now() > deadline) throw new Error(`${topic}: no view with brokers [${want}] all leading; last ${JSON.stringify(last)}`)
    await sleep(200)
  }
}

describe('several gateways', () => {
  // Runs one scenario on a fresh 3-gateway cluster, always stopped afterwards; gateway logs are
  // kept (and their tails attached to the error) when it fails.
  const scenario = perPartition => async () => {
    const cluster = new Cluster()
    let failed = false
    try {
      await killDuringLoad(cluster, perPartition)
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

  it('idempotent kafkajs producer, one sender per partition: a gateway is SIGKILLed mid-load; every message read back exactly once',
    { timeout: 90_000 }, scenario(true))
  // todo: kafkajs 2.2.4 sometimes resolves such a send() with acknowledgements for only some of
  // its partitions and never writes the rest (seen in about 1 run of 3: send 33 acked partitions
  // [0, 3] of [0..5]; the check before verifyTopic names the send()s). The retry in
  // sendMessages.js re-sends only to brokers that have not answered the send() yet, so a partition
  // that moved to a broker that already answered is skipped. A client bug, not floe's; it runs and
  // reports, without failing the suite.
  it('idempotent kafkajs producer, send()s spanning every partition: a gateway is SIGKILLed mid-load; every message read back exactly once',
    { timeout: 90_000, todo: 'kafkajs 2.2.4 can drop part of a multi-leader send() when a partition moves during its retries' }, scenario(false))
})

async function killDuringLoad (cluster, perPartition) {
  for (const n of [0, 1, 2]) await cluster.start(n)
  const client = kafka(cluster.gateways.get(0), { brokers: cluster.bootstrap([0, 1, 2]) })
  const admin = client.admin()
  const p = producer(client, { idempotent: true, maxInFlightRequests: 1 })
  const topic = uniqueTopic(perPartition ? 'multi-gw-per-partition' : 'multi-gw-spread')
  await admin.connect()
  await p.connect()
  const sends = []
  const started = Date.now()
  try {
    assert.equal(await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: PARTITIONS }] }), true)
    const before = await waitForLeaders(admin, topic, [0, 1, 2])
    const counts = {}
    for (const l of Object.values(before)) counts[l] = (counts[l] || 0) + 1
    const victim = Number(Object.entries(counts).sort((a, b) => b[1] - a[1])[0][0])

    // per partition: 6 senders of 5 messages to their partition every ~50 ms;
    // spread: 1 sender of 30 keyed messages (all partitions) every ~50 ms
    let stop = false
    const acksAt = {} // partition -> [ms after start of each acknowledgement]
    const loop = async part => {
      let round = 0
      while (!stop) {
        const sid = sends.length
        const opts = { seed: 1000 + sid, tag: `mg${sid}`, baseTs: BASE_TS + round * 100 }
        const messages = tagSend(perPartition ? makeMessages(5, { ...opts, partition: part }) : makeMessages(30, opts), sid)
        const entry = { messages, result: null }
        sends.push(entry)
        entry.result = await p.send({ topic, acks: -1, messages })
        for (const md of entry.result) (acksAt[md.partition] ||= []).push(Date.now() - started)
        round++
        await sleep(50)
      }
    }
    const loops = perPartition ? [...Array(PARTITIONS).keys()].map(loop) : [loop()]
    await sleep(2000)
    await cluster.kill9(victim)
    const killedAt = Date.now() - started
    await sleep(4000)
    stop = true
    await Promise.all(loops)
    const elapsed = Date.now() - started
    for (const s of sends) assert.ok(s.result, 'a send() never resolved')

    const survivors = [0, 1, 2].filter(n => n !== victim)
    const afterKill = await waitForLeaders(admin, topic, survivors)
    const rb = await readBack({ bootstrap: cluster.bootstrap(survivors).join(',') }, topic)
    // Which partitions each send() wrote to (kafkajs' default partitioner, as the producer used it),
    // against the partitions its result acknowledged: a send() that resolved without an entry for
    // one of its partitions was dropped by the client, not by floe.
    const partitionMetadata = [...Array(PARTITIONS).keys()].map(partitionId => ({ partitionId, leader: 0 }))
    const partitionOf = m => m.partition !== undefined ? m.partition : Partitioners.DefaultPartitioner()({ topic, partitionMetadata, message: m })
    const unacked = []
    sends.forEach(({ messages, result }, sid) => {
      const acked = new Set(result.map(md => md.partition))
      const parts = new Set(messages.map(partitionOf))
      for (const q of parts) if (!acked.has(q)) unacked.push({ sid, partition: q, messages: messages.filter(m => partitionOf(m) === q).length, acked: [...acked] })
    })
    assert.deepEqual(unacked, [], `kafkajs resolved send()s without acknowledging some of their partitions (client-side drop): ${JSON.stringify(unacked)}`)
    verifyTopic(rb, sends, { what: `after SIGKILL of gw-${victim}` })
    const total = sends.reduce((s, x) => s + x.messages.length, 0)
    const pauses = Object.entries(acksAt).map(([part, ts]) => {
      let gap = 0
      let at = 0
      for (let i = 1; i < ts.length; i++) if (ts[i] - ts[i - 1] > gap) { gap = ts[i] - ts[i - 1]; at = ts[i - 1] }
      return `p${part}: ${(gap / 1000).toFixed(2)}s at +${(at / 1000).toFixed(2)}s`
    })
    console.log(`kafkajs idempotent (${perPartition ? 'one sender per partition' : 'send()s spanning partitions'}): ` +
      `${sends.length} sends, ${total} messages; killed gw-${victim} at +${(killedAt / 1000).toFixed(2)}s; ` +
      `load took ${(elapsed / 1000).toFixed(1)}s; leaders before ${JSON.stringify(before)} after ${JSON.stringify(afterKill)}; ` +
      `longest ack pause per partition: ${pauses.join(', ')}`)
  } finally {
    await Promise.allSettled([p.disconnect(), admin.disconnect()])
  }
}
