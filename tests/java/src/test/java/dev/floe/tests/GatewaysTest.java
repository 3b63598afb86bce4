package dev.floe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * Several gateways on one backend (a shared data directory, or one bucket and table on moto):
 * the Java client follows partitions as they move. Floe-only: Apache Kafka has no gateways that
 * share storage, and a killed broker's partitions there move to replicas instead.
 */
class GatewaysTest {
    static final int PARTITIONS = 6;
    static final String[] CLUSTER = {"--heartbeat-interval", "200ms", "--session-timeout", "1500ms",
        "--checkpoint-interval", "1s", "--group-initial-rebalance-delay", "200ms"};

    static String[] gateway(int n) {
        List<String> a = new ArrayList<>(List.of("--gateway-id", "gw-" + n, "--node-id", Integer.toString(n)));
        Collections.addAll(a, CLUSTER);
        return a.toArray(String[]::new);
    }

    static Map<Integer, Integer> leaders(Admin admin, String topic) {
        TopicDescription d = Clients.get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
        return d.partitions().stream().filter(p -> p.leader() != null)
                .collect(Collectors.toMap(TopicPartitionInfo::partition, p -> p.leader().id()));
    }

    /** {partition → leader id} once every partition is led by one of {@code nodes}, as {@code admin} sees it. */
    static Map<Integer, Integer> settled(Admin admin, String topic, List<Integer> nodes) {
        return Clients.waitFor("every partition led by one of " + nodes, Duration.ofSeconds(30), () -> {
            List<Integer> brokers = Clients.get(admin.describeCluster().nodes()).stream().map(Node::id).sorted().toList();
            Map<Integer, Integer> l = leaders(admin, topic);
            return brokers.equals(nodes) && l.size() == PARTITIONS && nodes.containsAll(l.values()) ? l : null;
        });
    }

    @Test
    void producerAndConsumerFollowPartitionsThroughAKillAndAJoin() throws Exception {
        Assumptions.assumeFalse(Floe.reference(), "Floe only: gateways sharing one storage");
        Floe gw0 = Floe.start(gateway(0));
        Floe gw1 = Floe.sharing(gw0, gateway(1));
        Floe gw2 = Floe.sharing(gw0, gateway(2));
        Floe gw3 = Floe.sharing(gw0, gateway(3));
        List<Floe> all = List.of(gw0, gw1, gw2, gw3);
        try {
            gw1.start();
            gw2.start();
            String topic = Clients.unique("java-gateways");
            String bootstrap = gw0.bootstrap() + "," + gw1.bootstrap() + "," + gw2.bootstrap();
            // Until their membership views agree, gateways list different brokers, and a client
            // that meets both drops the broker the older view leaves out (with its requests).
            for (Floe g : List.of(gw0, gw1, gw2)) {
                try (Admin admin = Clients.admin(g.bootstrap())) {
                    Clients.waitFor(g.bootstrap() + " to list gateways 0, 1 and 2", Duration.ofSeconds(20),
                            () -> Clients.get(admin.describeCluster().nodes()).stream().map(Node::id).sorted()
                                    .toList().equals(List.of(0, 1, 2)) ? true : null);
                }
            }
            Map<Integer, Integer> before;
            try (Admin admin = Clients.admin(bootstrap)) {
                Clients.createTopic(admin, topic, PARTITIONS);
                before = settled(admin, topic, List.of(0, 1, 2));
            }
            // the gateway leading the most partitions is killed
            int victim = before.values().stream().collect(Collectors.groupingBy(n -> n, Collectors.counting()))
                    .entrySet().stream().max(Map.Entry.comparingByValue()).orElseThrow().getKey();
            String survivors = List.of(gw0, gw1, gw2).stream().filter(g -> g != all.get(victim))
                    .map(Floe::bootstrap).collect(Collectors.joining(","));

            List<RecordMetadata> acked = Collections.synchronizedList(new ArrayList<>());
            List<Exception> failed = Collections.synchronizedList(new ArrayList<>());
            Map<String, Object> conf = Map.of(ProducerConfig.LINGER_MS_CONFIG, 5,
                    ProducerConfig.METADATA_MAX_AGE_CONFIG, 1000, ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 60_000);
            int sent = 0;
            long started = System.nanoTime();
            try (KafkaProducer<byte[], byte[]> p = Clients.producer(bootstrap, conf)) {
                boolean killed = false;
                boolean joined = false;
                while (System.nanoTime() - started < Duration.ofSeconds(7).toNanos()) {
                    double t = (System.nanoTime() - started) / 1e9;
                    if (!killed && t > 1.5) {
                        all.get(victim).kill9();
                        killed = true;
                    }
                    if (!joined && t > 4) {
                        gw3.start(); // scale-out: takes its share of the partitions
                        joined = true;
                    }
                    for (int i = 0; i < 20; i++) {
                        int n = sent++;
                        p.send(new ProducerRecord<>(topic, ("k" + (n % 97)).getBytes(StandardCharsets.UTF_8),
                                ("v" + n).getBytes(StandardCharsets.UTF_8)), (md, e) -> {
                                    if (e != null) {
                                        failed.add(e);
                                    } else {
                                        acked.add(md);
                                    }
                                });
                    }
                    Floe.sleep(20);
                }
                p.flush();
            }
            assertTrue(failed.isEmpty(), failed.size() + " sends failed, first " + failed.stream().limit(3).toList());
            assertEquals(sent, acked.size());

            String after = survivors + "," + gw3.bootstrap();
            List<Integer> live = new ArrayList<>(List.of(0, 1, 2, 3));
            live.remove(Integer.valueOf(victim));
            try (Admin admin = Clients.admin(after)) {
                settled(admin, topic, live);
            }
            // a group consumer on the new layout reads every acknowledged record at its offset, once
            Map<TopicPartition, List<ConsumerRecord<byte[], byte[]>>> read = new HashMap<>();
            try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(after,
                    Map.of(ConsumerConfig.GROUP_ID_CONFIG, Clients.unique("java-gateways-group")))) {
                c.subscribe(List.of(topic));
                int n = 0;
                long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
                while (n < sent) {
                    assertTrue(System.nanoTime() < deadline, "read " + n + " of " + sent);
                    for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                        read.computeIfAbsent(new TopicPartition(r.topic(), r.partition()), x -> new ArrayList<>()).add(r);
                        n++;
                    }
                }
            }
            for (var e : read.entrySet()) {
                List<ConsumerRecord<byte[], byte[]>> rs = e.getValue();
                for (int i = 0; i < rs.size(); i++) {
                    assertEquals(i, rs.get(i).offset(), e.getKey() + ": offsets from 0 without gaps or duplicates");
                }
            }
            for (RecordMetadata md : acked) {
                List<ConsumerRecord<byte[], byte[]>> rs = read.get(new TopicPartition(topic, md.partition()));
                assertTrue(rs != null && md.offset() < rs.size(), "acknowledged " + md + " not read back");
            }
            assertEquals(sent, read.values().stream().mapToInt(List::size).sum(), "exactly the records sent");
            List<String> values = read.values().stream().flatMap(List::stream)
                    .map(r -> new String(r.value(), StandardCharsets.UTF_8)).distinct().toList();
            assertEquals(sent, values.size(), "every value once");
        } finally {
            AssertionError first = null;
            for (Floe g : all) {
                try {
                    g.close();
                } catch (AssertionError e) {
                    first = first == null ? e : first;
                }
            }
            if (first != null) {
                throw first;
            }
        }
    }
}
