'use strict'
// Broker restart: SIGTERM (must exit 0), start again on the same port and data dir; the data is
// still there and the same kafkajs clients reconnect on their own and keep producing.

const { describe, it, after } = require('node:test')
const assert = require('node:assert/strict')
const {
  Floe, kafka, producer, withDiagnostics, readBack, verifyTopic, tagSend, makeMessages, uniqueTopic,
  BASE_TS, CompressionTypes,
} = require('../helpers')

describe('broker restart', () => {
  let floe
  after(async () => { if (floe) await floe.cleanup() })

  it('SIGTERM + restart on the same data dir keeps the data; kafkajs reconnects and continues', { timeout: 60_000 }, async () => {
    floe = new Floe()
    await floe.start()
    await withDiagnostics(floe, async () => {
      const client = kafka(floe)
      const admin = client.admin()
      const plain = producer(client)
      const idem = producer(client, { idempotent: true, maxInFlightRequests: 1 })
      const tPlain = uniqueTopic('restart-plain')
      const tIdem = uniqueTopic('restart-idem')
      await admin.connect()
      await plain.connect()
      await idem.connect()
      try {
        assert.equal(await admin.createTopics({ waitForLeaders: true, topics: [{ topic: tPlain, numPartitions: 3 }, { topic: tIdem, numPartitions: 2 }] }), true)
        const plainSends = []
        const idemSends = []
        const round = async (r) => {
          for (let b = 0; b < 2; b++) {
            const sid = r * 2 + b
            const codec = [CompressionTypes.None, CompressionTypes.GZIP, CompressionTypes.LZ4, CompressionTypes.ZSTD][sid % 4]
            let messages = tagSend(makeMessages(100, { seed: 300 + sid, tag: `rp${sid}`, baseTs: BASE_TS + sid * 1000 }), sid)
            plainSends.push({ messages, result: await plain.send({ topic: tPlain, acks: -1, compression: codec, messages }) })
            messages = tagSend(makeMessages(100, { seed: 400 + sid, tag: `ri${sid}`, baseTs: BASE_TS + sid * 1000 }), sid)
            idemSends.push({ messages, result: await idem.send({ topic: tIdem, acks: -1, compression: codec, messages }) })
          }
        }
        await round(0)
        const before = await admin.fetchTopicOffsets(tPlain)

        await floe.restart() // asserts exit code 0 on SIGTERM
        assert.equal(floe.starts, 2)

        // data survived, visible to a fresh independent client
        verifyTopic(await readBack(floe, tPlain), plainSends, { what: 'after restart (plain)' })
        verifyTopic(await readBack(floe, tIdem), idemSends, { what: 'after restart (idempotent)' })
        // the old admin connection reconnects too
        const afterRestart = await admin.fetchTopicOffsets(tPlain)
        assert.deepEqual(afterRestart.sort((a, b) => a.partition - b.partition), before.sort((a, b) => a.partition - b.partition))

        // the same producers keep producing; offsets continue where they were
        await round(1)
        await round(2)
        verifyTopic(await readBack(floe, tPlain), plainSends, { what: 'continued (plain)' })
        verifyTopic(await readBack(floe, tIdem), idemSends, { what: 'continued (idempotent)' })
        const offs = await admin.fetchTopicOffsets(tIdem)
        assert.equal(offs.reduce((s, o) => s + Number(o.high), 0), 600)
      } finally {
        await Promise.allSettled([plain.disconnect(), idem.disconnect(), admin.disconnect()])
      }
      await floe.stopOk()
    })
  })
})
