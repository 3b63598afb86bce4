'use strict'
// A kafkajs group consumer in its own process, so a test can SIGKILL it (the gateway then learns
// of its death only by its session timeout). Started by test/groups.test.js with child_process.fork
// and one JSON argument { brokers, groupId, topic, clientId }; it reports to the parent over IPC:
//   { type: 'join', payload }            every GROUP_JOIN (member id, assignment, protocol)
//   { type: 'msg', partition, offset, value }  each record, before eachMessage returns (so before
//                                        its offset can be committed)
//   { type: 'crash', error }             a kafkajs CRASH event
//   { type: 'running' } / { type: 'failed', error }  once consumer.run() resolved / threw
// It exits when the parent goes away.

const { kafka, consumer } = require('./helpers')

const cfg = JSON.parse(process.argv[2])
const send = msg => new Promise((resolve, reject) => process.send(msg, err => (err ? reject(err) : resolve())))
process.on('disconnect', () => process.exit(0))

async function main () {
  const client = kafka({ bootstrap: cfg.brokers[0] }, { brokers: cfg.brokers, clientId: cfg.clientId })
  const c = consumer(client, { groupId: cfg.groupId })
  c.on(c.events.GROUP_JOIN, e => send({ type: 'join', payload: e.payload }).catch(() => {}))
  c.on(c.events.CRASH, e => send({ type: 'crash', error: `${e.payload.error.name}: ${e.payload.error.message}` }).catch(() => {}))
  await c.connect()
  await c.subscribe({ topics: [cfg.topic], fromBeginning: true })
  await c.run({
    eachMessage: async ({ partition, message }) => {
      await send({ type: 'msg', partition, offset: message.offset, value: message.value.toString() })
    },
  })
  await send({ type: 'running' })
}

main().catch(err => {
  send({ type: 'failed', error: `${err.name}: ${err.message}` }).finally(() => process.exit(1))
})
