'use strict'
// Produce requests pipelined on one connection must be appended in the order they arrive, as
// Kafka does (a broker handles a connection's requests one after another). kafkajs pipelines
// concurrent send() calls on one connection but may put them on the wire in a different order
// than they were called, so a recording TCP proxy (floe advertises the proxy's port) notes the
// order in which floe actually received them; the offsets floe assigned must follow it.

const { describe, it, before, after } = require('node:test')
const assert = require('node:assert/strict')
const net = require('node:net')
const {
  Floe, pickPort, kafka, producer, withDiagnostics, readBack, verifyTopic, tagSend, makeMessages,
  uniqueTopic, BASE_TS,
} = require('../helpers')

// Forwards 127.0.0.1:listenPort -> 127.0.0.1:targetPort and records, for every Produce request
// (api key 0), [connection number, correlation id, value of the first `sid` header it contains].
async function recordingProxy (listenPort, targetPort) {
  const produced = []
  const sockets = new Set()
  let conns = 0
  const server = net.createServer(client => {
    const conn = ++conns
    const upstream = net.createConnection({ host: '127.0.0.1', port: targetPort })
    sockets.add(client); sockets.add(upstream)
    let buf = Buffer.alloc(0)
    client.on('data', d => {
      buf = Buffer.concat([buf, d])
      while (buf.length >= 4 && buf.length >= 4 + buf.readInt32BE(0)) {
        const n = buf.readInt32BE(0)
        const frame = buf.subarray(4, 4 + n)
        buf = buf.subarray(4 + n)
        if (frame.readInt16BE(0) === 0) {
          // uncompressed records: header key "sid" is followed by a 1-byte varint length and the value
          const i = frame.indexOf('sid')
          const m = i >= 0 ? /^\d+/.exec(frame.subarray(i + 4, i + 12).toString('latin1')) : null
          produced.push({ conn, correlationId: frame.readInt32BE(4), sid: m ? Number(m[0]) : null })
        }
      }
      upstream.write(d)
    })
    upstream.on('data', d => client.write(d))
    client.on('end', () => upstream.end())
    upstream.on('end', () => client.end())
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
    client.on('close', () => sockets.delete(client))
    upstream.on('close', () => sockets.delete(upstream))
  })
  await new Promise((resolve, reject) => { server.once('error', reject); server.listen(listenPort, '127.0.0.1', resolve) })
  return {
    produced,
    close: () => new Promise(resolve => { for (const s of sockets) s.destroy(); server.close(() => resolve()) }),
  }
}

describe('produce ordering on one connection', () => {
  let floe, proxy, client, admin
  before(async () => {
    const proxyPort = await pickPort()
    floe = new Floe([], { advertisedPort: proxyPort })
    await floe.start()
    proxy = await recordingProxy(proxyPort, floe.port)
    client = kafka(floe)
    admin = client.admin()
    await admin.connect()
  })
  after(async () => {
    if (admin) await admin.disconnect().catch(() => {})
    if (proxy) await proxy.close()
    if (floe) {
      const res = await floe.stop()
      await floe.cleanup()
      assert.deepEqual(res, { code: 0, signal: null }, 'floe exit on SIGTERM')
    }
  })

  for (const acks of [-1, 1, 0]) {
    it(`acks=${acks}: 8 pipelined produce requests to one partition are appended in arrival order`, { timeout: 30_000 }, () => withDiagnostics(floe, async () => {
      const topic = uniqueTopic(`pipelined-acks${acks}`)
      assert.equal(await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 1 }] }), true)
      const p = producer(client)
      await p.connect()
      const sends = []
      const from = proxy.produced.length
      try {
        const pending = []
        for (let s = 0; s < 8; s++) {
          const messages = tagSend(makeMessages(20, { seed: 500 + s, tag: `o${s}`, partition: 0, baseTs: BASE_TS + s * 100 }), s)
          sends.push({ messages })
          pending.push(p.send({ topic, acks, messages }))
        }
        const results = await Promise.all(pending)
        results.forEach((r, s) => { sends[s].result = r })
      } finally {
        await p.disconnect()
      }
      // acks=0 sends resolve once written to the socket: let the proxy catch up
      for (let i = 0; i < 100 && proxy.produced.length - from < 8; i++) await new Promise(resolve => setTimeout(resolve, 20))
      const wire = proxy.produced.slice(from)
      assert.equal(wire.length, 8, `proxy saw ${wire.length} produce requests: ${JSON.stringify(wire)}`)
      assert.equal(new Set(wire.map(w => w.conn)).size, 1, `kafkajs used several connections: ${JSON.stringify(wire)}`)
      const wireOrder = wire.map(w => w.sid)

      let rb
      for (let i = 0; i < 50; i++) { // acks=0: the appends may still be in progress
        rb = await readBack(floe, topic)
        if ((rb[0] || []).length >= 160) break
        await new Promise(resolve => setTimeout(resolve, 100))
      }
      const rows = rb[0] || []
      assert.equal(rows.length, 160, 'records read back')
      const storedOrder = []
      for (const r of rows) {
        const sid = Number(r.headers.find(([k]) => k === 'sid')[1].toString())
        if (storedOrder[storedOrder.length - 1] !== sid) storedOrder.push(sid)
      }
      assert.deepEqual(storedOrder, wireOrder,
        `acks=${acks}: floe appended the requests in order ${storedOrder} but received them (correlation ids ` +
        `${wire.map(w => w.correlationId)}) in order ${wireOrder}`)
      if (acks !== 0) {
        // and the send results agree with the read-back (content, offsets)
        verifyTopic(rb, sends, { what: `pipelined acks=${acks}` })
      }
    }))
  }
})
