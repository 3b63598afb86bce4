package dev.floe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.ConsumerGroupState;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The Admin client: topics, partitions, configs, the cluster, offsets by time, records, groups.
 * (Group states through {@code state()}, deprecated in 4.x for {@code groupState()}, which 3.9
 * lacks: one source for both client lines.)
 */
@SuppressWarnings("deprecation")
class AdminTest {
    static Floe floe;
    static Admin admin;

    @BeforeAll
    static void start() {
        floe = Floe.start("--group-initial-rebalance-delay", "200ms");
        admin = Clients.admin(floe.bootstrap());
    }

    @AfterAll
    static void stop() {
        admin.close(Duration.ofSeconds(10));
        floe.close();
    }

    static Throwable failure(org.apache.kafka.common.KafkaFuture<?> f) {
        ExecutionException e = assertThrows(ExecutionException.class, () -> f.get(30, TimeUnit.SECONDS));
        return e.getCause();
    }

    @Test
    void topicsPartitionsAndConfigs() {
        String topic = Clients.unique("java-admin");
        NewTopic nt = new NewTopic(topic, 2, (short) 1).configs(Map.of("retention.ms", "3600000"));
        Clients.get(admin.createTopics(List.of(nt)).all());
        assertInstanceOf(TopicExistsException.class, failure(admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all()));
        assertTrue(Clients.get(admin.listTopics().names()).contains(topic));

        TopicDescription d = Clients.get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
        assertEquals(2, d.partitions().size());
        assertNotNull(d.topicId());
        d.partitions().forEach(p -> assertNotNull(p.leader(), "partition " + p.partition() + " has a leader"));

        Clients.get(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all());
        assertEquals(5, Clients.get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic).partitions().size());
        assertInstanceOf(InvalidPartitionsException.class,
                failure(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all()));

        ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Config c = Clients.get(admin.describeConfigs(List.of(res)).all()).get(res);
        ConfigEntry retention = c.get("retention.ms");
        assertEquals("3600000", retention.value());
        assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, retention.source());
        assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, c.get("cleanup.policy").source());

        Clients.get(admin.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE),
                new AlterConfigOp(new ConfigEntry("max.message.bytes", "200000"), AlterConfigOp.OpType.SET)))).all());
        c = Clients.get(admin.describeConfigs(List.of(res)).all()).get(res);
        assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, c.get("retention.ms").source());
        assertEquals("200000", c.get("max.message.bytes").value());

        Clients.get(admin.deleteTopics(List.of(topic)).all());
        Clients.waitFor("the topic to be gone", Duration.ofSeconds(10),
                () -> Clients.get(admin.listTopics().names()).contains(topic) ? null : true);
        assertInstanceOf(UnknownTopicOrPartitionException.class,
                failure(admin.describeTopics(List.of(topic)).allTopicNames()));
    }

    @Test
    void describeClusterNamesTheGateway() {
        DescribeClusterResult r = admin.describeCluster();
        assertNotNull(Clients.get(r.clusterId()));
        var nodes = Clients.get(r.nodes());
        assertEquals(1, nodes.size(), "one gateway, one broker: " + nodes);
        assertEquals(floe.port, nodes.iterator().next().port());
        assertNotNull(Clients.get(r.controller()));
    }

    @Test
    void listOffsetsByTimeAndDeleteRecords() {
        String topic = Clients.unique("java-offsets");
        Clients.createTopic(admin, topic, 1);
        try (KafkaProducer<byte[], byte[]> p = Clients.producer(floe.bootstrap(), Map.of())) {
            for (int i = 0; i < 10; i++) {
                // timestamps 1000, 2000, ..., 10000 (CreateTime)
                p.send(new ProducerRecord<>(topic, 0, 1000L * (i + 1), null, ("v" + i).getBytes(StandardCharsets.UTF_8)));
            }
            p.flush();
        }
        TopicPartition tp = new TopicPartition(topic, 0);
        assertEquals(0, offset(tp, OffsetSpec.earliest()));
        assertEquals(10, offset(tp, OffsetSpec.latest()));
        assertEquals(3, offset(tp, OffsetSpec.forTimestamp(3500)), "first record at or after 3500");
        assertEquals(0, offset(tp, OffsetSpec.forTimestamp(0)));
        assertEquals(-1, offset(tp, OffsetSpec.forTimestamp(20_000)), "none at or after 20000");
        ListOffsetsResult.ListOffsetsResultInfo max =
                Clients.get(admin.listOffsets(Map.of(tp, OffsetSpec.maxTimestamp())).partitionResult(tp));
        assertEquals(9, max.offset());
        assertEquals(10_000, max.timestamp());

        var deleted = Clients.get(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(4))).lowWatermarks().get(tp));
        assertEquals(4, deleted.lowWatermark());
        assertEquals(4, offset(tp, OffsetSpec.earliest()));
        try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(floe.bootstrap(), Map.of())) {
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            List<Long> offsets = new ArrayList<>();
            long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
            while (offsets.size() < 6 && System.nanoTime() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                    offsets.add(r.offset());
                }
            }
            assertEquals(List.of(4L, 5L, 6L, 7L, 8L, 9L), offsets);
        }
    }

    long offset(TopicPartition tp, OffsetSpec spec) {
        return Clients.get(admin.listOffsets(Map.of(tp, spec)).partitionResult(tp)).offset();
    }

    @Test
    void consumerGroupsAndTheirOffsets() {
        String topic = Clients.unique("java-admin-groups");
        String group = Clients.unique("java-admin-group");
        Clients.createTopic(admin, topic, 2);
        try (KafkaProducer<byte[], byte[]> p = Clients.producer(floe.bootstrap(), Map.of())) {
            for (int i = 0; i < 20; i++) {
                p.send(new ProducerRecord<>(topic, i % 2, null, ("v" + i).getBytes(StandardCharsets.UTF_8)));
            }
            p.flush();
        }
        try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(floe.bootstrap(), Map.of(ConsumerConfig.GROUP_ID_CONFIG, group))) {
            c.subscribe(List.of(topic));
            int n = 0;
            long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
            while (n < 20 && System.nanoTime() < deadline) {
                n += c.poll(Duration.ofMillis(200)).count();
            }
            assertEquals(20, n);
            c.commitSync();
            ConsumerGroupDescription d = Clients.get(admin.describeConsumerGroups(List.of(group)).all()).get(group);
            assertEquals(1, d.members().size());
            assertEquals(2, d.members().iterator().next().assignment().topicPartitions().size());
            assertEquals(ConsumerGroupState.STABLE, d.state());
        }
        Set<String> listed = Clients.get(admin.listConsumerGroups().all()).stream()
                .map(ConsumerGroupListing::groupId).collect(java.util.stream.Collectors.toSet());
        assertTrue(listed.contains(group), "listed: " + listed);
        ConsumerGroupDescription empty = Clients.get(admin.describeConsumerGroups(List.of(group)).all()).get(group);
        assertEquals(ConsumerGroupState.EMPTY, empty.state());

        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        Map<TopicPartition, OffsetAndMetadata> committed =
                Clients.get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
        assertEquals(Map.of(p0, 10L, p1, 10L), Map.of(p0, committed.get(p0).offset(), p1, committed.get(p1).offset()));

        Clients.get(admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(3, "rewound"))).all());
        committed = Clients.get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
        assertEquals(3, committed.get(p0).offset());
        assertEquals("rewound", committed.get(p0).metadata());

        Clients.get(admin.deleteConsumerGroupOffsets(group, Set.of(p1)).all());
        committed = Clients.get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
        assertFalse(committed.containsKey(p1) && committed.get(p1) != null, "p1's offset deleted: " + committed);

        Clients.get(admin.deleteConsumerGroups(List.of(group)).all());
        Set<String> after = Clients.get(admin.listConsumerGroups().all()).stream()
                .map(ConsumerGroupListing::groupId).collect(java.util.stream.Collectors.toSet());
        assertFalse(after.contains(group), "deleted group still listed");
    }
}
