package dev.floe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicListing;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * MirrorMaker 2 (dedicated mode, its own JVM) copies a topic from one Floe cluster to another.
 * Its workers are distributed Connect workers, so this also runs Connect's distributed herder
 * on Floe: its config, offset and status topics are compacted topics on the target cluster.
 */
class MirrorTest {
    static void produce(String bootstrap, String topic, int from, int to) {
        try (KafkaProducer<byte[], byte[]> p = Clients.producer(bootstrap, Map.of())) {
            for (int i = from; i < to; i++) {
                p.send(new ProducerRecord<>(topic, ("k" + (i % 29)).getBytes(StandardCharsets.UTF_8),
                        ("v" + i).getBytes(StandardCharsets.UTF_8)));
            }
            p.flush();
        }
    }

    static List<String> values(Map<Integer, List<ConsumerRecord<byte[], byte[]>>> byPartition, int p) {
        return byPartition.get(p).stream().map(r -> new String(r.value(), StandardCharsets.UTF_8)).toList();
    }

    /** Waits until {@code target} holds {@code n} records of {@code topic}, then compares it with the source. */
    static void awaitMirrored(Floe source, Floe target, String topic, String mirrored, int n, Process mm, Path log) {
        Clients.waitFor(n + " records mirrored into " + mirrored, Duration.ofSeconds(90), () -> {
            if (!mm.isAlive()) {
                throw new AssertionError("MirrorMaker exited:\n" + Floe.tail(log, 60));
            }
            try (Admin admin = Clients.admin(target.bootstrap())) {
                boolean exists = Clients.get(admin.listTopics().listings()).stream()
                        .map(TopicListing::name).anyMatch(mirrored::equals);
                if (!exists) {
                    return null;
                }
                Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
                for (int p = 0; p < 3; p++) {
                    latest.put(new TopicPartition(mirrored, p), OffsetSpec.latest());
                }
                long end = Clients.get(admin.listOffsets(latest).all()).values().stream()
                        .mapToLong(ListOffsetsResult.ListOffsetsResultInfo::offset).sum();
                return end >= n ? true : null;
            }
        });
        var from = Clients.readAll(source.bootstrap(), topic, 3);
        var to = Clients.readAll(target.bootstrap(), mirrored, 3);
        for (int p = 0; p < 3; p++) {
            assertEquals(values(from, p), values(to, p), "partition " + p + " mirrored in order, once");
        }
    }

    @Test
    void mirrorMakerCopiesATopicBetweenTwoClusters(@TempDir Path dir) throws Exception {
        try (Floe a = Floe.start("--group-initial-rebalance-delay", "200ms");
                Floe b = Floe.start("--group-initial-rebalance-delay", "200ms")) {
            String topic = Clients.unique("java-mirror");
            try (Admin admin = Clients.admin(a.bootstrap())) {
                Clients.createTopic(admin, topic, 3);
            }
            produce(a.bootstrap(), topic, 0, 300);
            Path props = dir.resolve("mm2.properties");
            Files.writeString(props, String.join("\n",
                    "clusters=a,b",
                    "a.bootstrap.servers=" + a.bootstrap(),
                    "b.bootstrap.servers=" + b.bootstrap(),
                    "a->b.enabled=true",
                    "a->b.topics=" + topic,
                    "b->a.enabled=false",
                    "replication.factor=1",
                    "checkpoints.topic.replication.factor=1",
                    "heartbeats.topic.replication.factor=1",
                    "offset-syncs.topic.replication.factor=1",
                    "offset.storage.replication.factor=1",
                    "status.storage.replication.factor=1",
                    "config.storage.replication.factor=1",
                    "sync.topic.acls.enabled=false",
                    "refresh.topics.interval.seconds=1",
                    "emit.checkpoints.interval.seconds=1",
                    "emit.heartbeats.interval.seconds=1", ""));
            Path log = dir.resolve("mm2.log");
            Process mm = Clients.childJvm(log, "org.apache.kafka.connect.mirror.MirrorMaker", props.toString(),
                    "--clusters", "b");
            try {
                String mirrored = "a." + topic;
                awaitMirrored(a, b, topic, mirrored, 300, mm, log);
                produce(a.bootstrap(), topic, 300, 400);
                awaitMirrored(a, b, topic, mirrored, 400, mm, log);
            } finally {
                Clients.stop(mm);
            }
        }
    }
}
