'use strict'
// kafkajs admin client against floe: topics, metadata, configs, partitions.

const { describe, it, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { ConfigResourceTypes, ConfigSource } = require('kafkajs')
const { Floe, kafka, withDiagnostics, uniqueTopic, producer, makeMessages } = require('../helpers')

describe('kafkajs admin', () => {
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

  const describeTopic = async (topic, names) => {
    // kafkajs sends configNames [] when omitted (meaning "all", as Kafka brokers treat it);
    // it cannot encode null.
    const resource = { type: ConfigResourceTypes.TOPIC, name: topic }
    if (names) resource.configNames = names
    const res = await admin.describeConfigs({ includeSynonyms: false, resources: [resource] })
    assert.equal(res.resources.length, 1)
    const r = res.resources[0]
    assert.equal(r.errorCode, 0, `describeConfigs error ${r.errorCode} ${r.errorMessage}`)
    assert.equal(r.resourceName, topic)
    return Object.fromEntries(r.configEntries.map(e => [e.configName, e]))
  }

  it('createTopics with 3 partitions and configEntries, listTopics, fetchTopicMetadata', { timeout: 30_000 }, () => withDiagnostics(floe, async () => {
    const topic = uniqueTopic('admin-create')
    const created = await admin.createTopics({
      waitForLeaders: true,
      topics: [{
        topic,
        numPartitions: 3,
        replicationFactor: 1,
        configEntries: [
          { name: 'retention.ms', value: '3600000' },
          { name: 'max.message.bytes', value: '200000' },
          { name: 'cleanup.policy', value: 'delete' },
        ],
      }],
    })
    assert.equal(created, true, 'createTopics should report the topic as created')

    // Creating it again: kafkajs resolves false on TOPIC_ALREADY_EXISTS.
    const again = await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] })
    assert.equal(again, false, 'second createTopics of the same topic should report not-created')

    const names = await admin.listTopics()
    assert.ok(names.includes(topic), `listTopics ${JSON.stringify(names)} lacks ${topic}`)

    const md = await admin.fetchTopicMetadata({ topics: [topic] })
    assert.equal(md.topics.length, 1)
    assert.equal(md.topics[0].name, topic)
    const parts = md.topics[0].partitions.slice().sort((a, b) => a.partitionId - b.partitionId)
    assert.deepEqual(parts.map(p => p.partitionId), [0, 1, 2])
    for (const p of parts) {
      assert.equal(p.partitionErrorCode, 0)
      assert.equal(p.leader, 0, `partition ${p.partitionId} leader`)
      assert.deepEqual(p.replicas, [0])
      assert.deepEqual(p.isr, [0])
    }

    const cfg = await describeTopic(topic, ['retention.ms', 'max.message.bytes', 'cleanup.policy'])
    assert.equal(cfg['retention.ms'].configValue, '3600000')
    assert.equal(cfg['retention.ms'].configSource, ConfigSource.TOPIC_CONFIG)
    assert.equal(cfg['retention.ms'].isDefault, false)
    assert.equal(cfg['max.message.bytes'].configValue, '200000')
    assert.equal(cfg['cleanup.policy'].configValue, 'delete')
  }))

  it('createTopics with an unknown config is refused with INVALID_CONFIG', { timeout: 30_000 }, () => withDiagnostics(floe, async () => {
    const topic = uniqueTopic('admin-badcfg')
    await assert.rejects(
      admin.createTopics({ topics: [{ topic, numPartitions: 1, configEntries: [{ name: 'no.such.config', value: '1' }] }] }),
      err => {
        const types = [err.type, ...(err.errors || []).map(e => e.type)]
        assert.ok(types.includes('INVALID_CONFIG'), `want INVALID_CONFIG, got ${err.name}: ${err.message} ${JSON.stringify(types)}`)
        return true
      })
    const names = await admin.listTopics()
    assert.ok(!names.includes(topic), 'refused topic must not exist')
  }))

  it('describeConfigs reports defaults for a topic without overrides', { timeout: 30_000 }, () => withDiagnostics(floe, async () => {
    const topic = uniqueTopic('admin-defaults')
    assert.equal(await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 1 }] }), true)
    const cfg = await describeTopic(topic, null)
    for (const name of ['retention.ms', 'max.message.bytes', 'cleanup.policy', 'message.timestamp.type']) {
      assert.ok(cfg[name], `describeConfigs (all) lacks ${name}: ${Object.keys(cfg).join(', ')}`)
      assert.equal(cfg[name].isDefault, true, `${name} should be a default`)
    }
    assert.equal(cfg['max.message.bytes'].configValue, '1048588')
    assert.equal(cfg['message.timestamp.type'].configValue, 'CreateTime')
  }))

  it('alterConfigs sets topic configs, visible in describeConfigs and enforced', { timeout: 30_000 }, () => withDiagnostics(floe, async () => {
    const topic = uniqueTopic('admin-alter')
    assert.equal(await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 1 }] }), true)
    const res = await admin.alterConfigs({
      validateOnly: false,
      resources: [{
        type: ConfigResourceTypes.TOPIC,
        name: topic,
        configEntries: [
          { name: 'retention.ms', value: '7200000' },
          { name: 'max.message.bytes', value: '2000' },
        ],
      }],
    })
    assert.equal(res.resources[0].errorCode, 0, `alterConfigs error: ${JSON.stringify(res)}`)
    const cfg = await describeTopic(topic, ['retention.ms', 'max.message.bytes'])
    assert.equal(cfg['retention.ms'].configValue, '7200000')
    assert.equal(cfg['retention.ms'].configSource, ConfigSource.TOPIC_CONFIG)
    assert.equal(cfg['max.message.bytes'].configValue, '2000')

    // validateOnly changes nothing
    await admin.alterConfigs({
      validateOnly: true,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'retention.ms', value: '1' }] }],
    })
    assert.equal((await describeTopic(topic, ['retention.ms']))['retention.ms'].configValue, '7200000')

    // the altered max.message.bytes is enforced on produce
    const p = producer(client, { retry: { retries: 0 } })
    await p.connect()
    try {
      await assert.rejects(
        p.send({ topic, acks: -1, messages: [{ value: Buffer.alloc(5000, 7) }] }),
        err => /MESSAGE_TOO_LARGE|larger than/i.test(`${err.type} ${err.message} ${err.cause && err.cause.type}`))
      const ok = await p.send({ topic, acks: -1, messages: [{ value: Buffer.alloc(500, 7) }] })
      assert.equal(ok[0].errorCode, 0)
    } finally {
      await p.disconnect()
    }
  }))

  it('createPartitions grows a topic and the new partitions accept writes', { timeout: 30_000 }, () => withDiagnostics(floe, async () => {
    const topic = uniqueTopic('admin-grow')
    assert.equal(await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 3 }] }), true)
    await admin.createPartitions({ topicPartitions: [{ topic, count: 5 }] })
    const md = await admin.fetchTopicMetadata({ topics: [topic] })
    assert.deepEqual(md.topics[0].partitions.map(p => p.partitionId).sort(), [0, 1, 2, 3, 4])

    // shrinking is refused
    await assert.rejects(admin.createPartitions({ topicPartitions: [{ topic, count: 2 }] }),
      err => /INVALID_PARTITIONS/.test(`${err.type} ${err.message} ${JSON.stringify((err.errors || []).map(e => e.type))}`))

    const p = producer(client)
    await p.connect()
    try {
      const res = await p.send({ topic, acks: -1, messages: makeMessages(10, { partition: i => i % 5 }) })
      assert.deepEqual(res.map(r => r.partition).sort(), [0, 1, 2, 3, 4])
      for (const r of res) assert.equal(r.baseOffset, '0')
    } finally {
      await p.disconnect()
    }
    const offs = await admin.fetchTopicOffsets(topic)
    assert.deepEqual(offs.sort((a, b) => a.partition - b.partition).map(o => [o.partition, o.low, o.high]),
      [0, 1, 2, 3, 4].map(pp => [pp, '0', '2']))
  }))

  it('deleteTopics removes topics', { timeout: 30_000 }, () => withDiagnostics(floe, async () => {
    const a = uniqueTopic('admin-del')
    const b = uniqueTopic('admin-del')
    assert.equal(await admin.createTopics({ waitForLeaders: true, topics: [{ topic: a, numPartitions: 2 }, { topic: b, numPartitions: 1 }] }), true)
    assert.ok((await admin.listTopics()).includes(a))
    await admin.deleteTopics({ topics: [a, b], timeout: 5000 })
    const names = await admin.listTopics()
    assert.ok(!names.includes(a) && !names.includes(b), `deleted topics still listed: ${JSON.stringify(names)}`)
    // deleting again: UNKNOWN_TOPIC_OR_PARTITION (retriable for kafkajs, so use a client that
    // retries once)
    const quick = kafka(floe, { retry: { retries: 1, initialRetryTime: 50 } }).admin()
    await quick.connect()
    try {
      await assert.rejects(quick.deleteTopics({ topics: [a], timeout: 5000 }), err => {
        const types = [err.type, err.cause && err.cause.type, ...(err.errors || []).map(e => e.type)]
        assert.ok(types.includes('UNKNOWN_TOPIC_OR_PARTITION'), `want UNKNOWN_TOPIC_OR_PARTITION, got ${err.name}: ${err.message} ${JSON.stringify(types)}`)
        return true
      })
    } finally {
      await quick.disconnect()
    }
    // the name can be reused
    assert.equal(await admin.createTopics({ waitForLeaders: true, topics: [{ topic: a, numPartitions: 1 }] }), true)
    const offs = await admin.fetchTopicOffsets(a)
    assert.deepEqual(offs.map(o => [o.partition, o.low, o.high]), [[0, '0', '0']])
  }))
})
