'use strict'
// kafkajs producer against floe; everything produced is read back byte-exactly with an
// independent client (confluent-kafka, read_back.py) and checked against the send results.

const { describe, it, before, after } = require('node:test')
const assert = require('node:assert/strict')
const {
  Floe, kafka, producer, withDiagnostics, requestsSeen, readBack, verifyTopic, tagSend, makeMessages,
  uniqueTopic, CODECS, BASE_TS, CompressionTypes,
} = require('../helpers')

describe('kafkajs producer', () => {
  let floe, client, admin
  before(async () => {
    floe = new Floe()
    await floe.start()
    client = kafka(floe)
    admin = client.admin()
    await admin.connect()
  })
  after(async () => {
    if (admin) await admin.disconnect().catch(() => {})
    if (floe) {
      const res = await floe.stop()
      await floe.cleanup()
      assert.deepEqual(res, { code: 0, signal: null }, 'floe exit on SIGTERM')
    }
  })

  const createTopic = async (topic, numPartitions, configEntries = []) => {
    const ok = await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions, configEntries }] })
    assert.equal(ok, true, `createTopics ${topic}`)
  }

  // Send `batches` (arrays of messages) one send() at a time; returns [{messages, result}].
  const sendAll = async (p, topic, batches, opts) => {
    const sends = []
    for (const [i, msgs] of batches.entries()) {
      const messages = tagSend(msgs, i)
      const result = await p.send({ topic, messages, ...opts })
      sends.push({ messages, result })
    }
    return sends
  }

  const checkHighs = async (topic, readback, nParts) => {
    const offs = await admin.fetchTopicOffsets(topic)
    assert.equal(offs.length, nParts)
    for (const o of offs) {
      const n = (readback[o.partition] || []).length
      assert.equal(o.low, '0', `partition ${o.partition} low watermark`)
      assert.equal(o.high, String(n), `partition ${o.partition} high watermark vs ${n} records read back`)
      assert.equal(o.offset, String(n))
    }
  }

  for (const acks of [-1, 1]) {
    it(`acks=${acks}: keyed records with headers and explicit timestamps, byte-exact read-back`, { timeout: 60_000 }, () => withDiagnostics(floe, async () => {
      const topic = uniqueTopic(`acks${acks < 0 ? 'all' : acks}`)
      await createTopic(topic, 3)
      const p = producer(client)
      await p.connect()
      let sends
      try {
        const batches = [0, 1, 2, 3].map(b => makeMessages(150, { seed: 10 + b, tag: `a${acks}b${b}`, baseTs: BASE_TS + b * 1000 }))
        sends = await sendAll(p, topic, batches, { acks })
      } finally {
        await p.disconnect()
      }
      const rb = await readBack(floe, topic)
      assert.equal(Object.keys(rb).length, 3, 'keys should spread over all 3 partitions')
      verifyTopic(rb, sends, { what: `acks=${acks}` })
      await checkHighs(topic, rb, 3)
    }))
  }

  it('acks=0: fire-and-forget records all arrive', { timeout: 60_000 }, () => withDiagnostics(floe, async () => {
    const topic = uniqueTopic('acks0')
    await createTopic(topic, 1)
    const p = producer(client)
    await p.connect()
    const sent = []
    try {
      for (let b = 0; b < 5; b++) {
        const messages = tagSend(makeMessages(20, { seed: 40 + b, tag: `z${b}`, partition: 0 }), b)
        const res = await p.send({ topic, acks: 0, messages })
        assert.deepEqual(res, [], 'acks=0 has no response')
        sent.push(messages)
      }
    } finally {
      await p.disconnect()
    }
    // no results to compare offsets with: synthesize them from the send order
    const sends = sent.map((messages, b) => ({ messages, result: [{ partition: 0, errorCode: 0, baseOffset: String(b * 20) }] }))
    let rb
    for (let i = 0; i < 50; i++) { // acks=0: the last batches may still be in flight
      rb = await readBack(floe, topic)
      if ((rb[0] || []).length >= 100) break
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    verifyTopic(rb, sends, { what: 'acks=0' })
  }))

  for (const [name, codec] of CODECS) {
    it(`compression ${name}: three sends over 3 partitions, byte-exact read-back`, { timeout: 60_000 }, () => withDiagnostics(floe, async () => {
      const topic = uniqueTopic(`codec-${name}`)
      await createTopic(topic, 3)
      const p = producer(client)
      await p.connect()
      let sends
      try {
        const batches = [0, 1, 2].map(b => makeMessages(300, { seed: 100 + b, tag: `${name}${b}`, baseTs: BASE_TS + b * 1000 }))
        sends = await sendAll(p, topic, batches, { acks: -1, compression: codec })
      } finally {
        await p.disconnect()
      }
      const rb = await readBack(floe, topic)
      verifyTopic(rb, sends, { what: `compression ${name}` })
      await checkHighs(topic, rb, 3)
    }))
  }

  it('sendBatch to two topics with mixed codecs in one request', { timeout: 60_000 }, () => withDiagnostics(floe, async () => {
    const t1 = uniqueTopic('batch-a')
    const t2 = uniqueTopic('batch-b')
    await createTopic(t1, 2)
    await createTopic(t2, 1)
    const p = producer(client)
    await p.connect()
    const m1 = tagSend(makeMessages(100, { seed: 7, tag: 'ba' }), 0)
    const m2 = tagSend(makeMessages(50, { seed: 8, tag: 'bb' }), 0)
    let res
    try {
      res = await p.sendBatch({ acks: -1, compression: CompressionTypes.ZSTD, topicMessages: [{ topic: t1, messages: m1 }, { topic: t2, messages: m2 }] })
    } finally {
      await p.disconnect()
    }
    verifyTopic(await readBack(floe, t1), [{ messages: m1, result: res.filter(r => r.topicName === t1) }], { what: 'sendBatch t1' })
    verifyTopic(await readBack(floe, t2), [{ messages: m2, result: res.filter(r => r.topicName === t2) }], { what: 'sendBatch t2' })
  }))

  it('idempotent producer (maxInFlightRequests 1), every codec, contiguous offsets, no duplicates', { timeout: 60_000 }, () => withDiagnostics(floe, async () => {
    const topic = uniqueTopic('idempotent')
    await createTopic(topic, 3)
    const p = producer(client, { idempotent: true, maxInFlightRequests: 1 })
    await p.connect()
    const sends = []
    try {
      let sid = 0
      for (let round = 0; round < 2; round++) {
        for (const [name, codec] of CODECS) {
          const messages = tagSend(makeMessages(120, { seed: 200 + sid, tag: `idem-${name}`, baseTs: BASE_TS + sid * 1000 }), sid)
          const result = await p.send({ topic, acks: -1, compression: codec, messages })
          sends.push({ messages, result })
          sid++
        }
      }
    } finally {
      await p.disconnect()
    }
    assert.ok(requestsSeen.has('InitProducerId'), 'the idempotent producer should have asked for a producer id')
    const rb = await readBack(floe, topic)
    verifyTopic(rb, sends, { what: 'idempotent' })
    await checkHighs(topic, rb, 3)
  }))

  it('fetchTopicOffsetsByTimestamp returns the first offset at or after the timestamp', { timeout: 60_000 }, () => withDiagnostics(floe, async () => {
    const topic = uniqueTopic('by-ts')
    await createTopic(topic, 2)
    const p = producer(client)
    await p.connect()
    try {
      // partition 0: ts BASE + 10*i, partition 1: ts BASE + 1000 + 10*i; several batches, two codecs
      for (let b = 0; b < 4; b++) {
        const messages = []
        for (let i = b * 5; i < b * 5 + 5; i++) {
          messages.push({ partition: 0, key: `k${i}`, value: `v${i}`, timestamp: String(BASE_TS + 10 * i) })
          messages.push({ partition: 1, key: `k${i}`, value: `v${i}`, timestamp: String(BASE_TS + 1000 + 10 * i) })
        }
        await p.send({ topic, acks: -1, messages, compression: b % 2 ? CompressionTypes.GZIP : CompressionTypes.None })
      }
    } finally {
      await p.disconnect()
    }
    const at = async ts => {
      const res = await admin.fetchTopicOffsetsByTimestamp(topic, ts)
      return Object.fromEntries(res.map(r => [r.partition, Number(r.offset)]))
    }
    assert.deepEqual(await at(BASE_TS), { 0: 0, 1: 0 }, 'exact first timestamp')
    assert.deepEqual(await at(BASE_TS - 5000), { 0: 0, 1: 0 }, 'before everything')
    assert.deepEqual(await at(BASE_TS + 55), { 0: 6, 1: 0 }, 'between records')
    assert.deepEqual(await at(BASE_TS + 120), { 0: 12, 1: 0 }, 'exact, inside a later batch')
    assert.deepEqual(await at(BASE_TS + 1000 + 95), { 0: 20, 1: 10 }, 'past partition 0 (kafkajs maps -1 to the high watermark)')
    assert.deepEqual(await at(BASE_TS + 1000 + 190), { 0: 20, 1: 19 }, 'last record of partition 1')
    assert.deepEqual(await at(BASE_TS + 10_000_000), { 0: 20, 1: 20 }, 'after everything')
  }))

  it('message.timestamp.type=LogAppendTime: broker time in the send result and in the records', { timeout: 60_000 }, () => withDiagnostics(floe, async () => {
    const topic = uniqueTopic('log-append-time')
    await createTopic(topic, 1, [{ name: 'message.timestamp.type', value: 'LogAppendTime' }])
    const p = producer(client)
    await p.connect()
    const t0 = Date.now()
    let res
    const messages = tagSend(makeMessages(30, { seed: 900, tag: 'lat', partition: 0 }), 0)
    try {
      res = await p.send({ topic, acks: -1, compression: CompressionTypes.GZIP, messages })
    } finally {
      await p.disconnect()
    }
    const t1 = Date.now()
    const lat = Number(res[0].logAppendTime)
    assert.ok(lat >= t0 - 1000 && lat <= t1 + 1000, `logAppendTime ${res[0].logAppendTime} not within [${t0}, ${t1}]`)
    const rb = await readBack(floe, topic)
    verifyTopic(rb, [{ messages, result: res }], { expectTimestamps: false, what: 'LogAppendTime' })
    for (const r of rb[0]) {
      assert.equal(r.timestampType, 2, `offset ${r.offset}: timestamp type ${r.timestampType}, want LogAppendTime (2)`)
      assert.equal(r.timestamp, lat, `offset ${r.offset}: timestamp`)
    }
  }))

  it('producer with allowAutoTopicCreation creates a missing topic', { timeout: 60_000 }, () => withDiagnostics(floe, async () => {
    const topic = uniqueTopic('auto-created')
    const p = producer(client, { allowAutoTopicCreation: true })
    await p.connect()
    let res
    const messages = tagSend(makeMessages(10, { seed: 901, tag: 'auto' }), 0)
    try {
      res = await p.send({ topic, acks: -1, messages })
    } finally {
      await p.disconnect()
    }
    assert.ok((await admin.listTopics()).includes(topic))
    verifyTopic(await readBack(floe, topic), [{ messages, result: res }], { what: 'auto-created' })
  }))

  it('a 5000-byte message to a topic with max.message.bytes=1000 fails with MESSAGE_TOO_LARGE', { timeout: 60_000 }, () => withDiagnostics(floe, async () => {
    const topic = uniqueTopic('too-large')
    await createTopic(topic, 1, [{ name: 'max.message.bytes', value: '1000' }])
    const p = producer(client)
    await p.connect()
    try {
      const started = Date.now()
      await assert.rejects(p.send({ topic, acks: -1, messages: [{ key: 'big', value: Buffer.alloc(5000, 0x61) }] }), err => {
        const types = [err.type, err.cause && err.cause.type]
        assert.ok(types.includes('MESSAGE_TOO_LARGE'),
          `want MESSAGE_TOO_LARGE, got ${err.name} ${err.message} ${JSON.stringify(types)}`)
        assert.match(`${err.message} ${err.cause && err.cause.message}`, /larger than/i)
        assert.equal(err.retriable, false, 'MESSAGE_TOO_LARGE must not be retriable')
        return true
      })
      assert.ok(Date.now() - started < 5000, 'non-retriable error should fail fast')
      // nothing was written, and small messages still go through at offset 0
      const offs = await admin.fetchTopicOffsets(topic)
      assert.equal(offs[0].high, '0')
      const res = await p.send({ topic, acks: -1, messages: [{ key: 'small', value: Buffer.alloc(500, 0x62) }] })
      assert.equal(res[0].baseOffset, '0')
    } finally {
      await p.disconnect()
    }
  }))
})
