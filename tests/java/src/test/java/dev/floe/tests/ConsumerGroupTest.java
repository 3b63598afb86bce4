package dev.floe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Consumer groups as Java applications use them: the classic protocol with the range and
 * cooperative-sticky assignors and static membership, and the consumer protocol (KIP-848), each
 * consuming every record once and resuming from committed offsets. Also fetch sessions as the
 * Java client uses them: Floe declines to create one (session id 0, which Kafka allows), so the
 * client sends full fetches; one that pauses and resumes partitions must still read everything.
 */
class ConsumerGroupTest {
    static final int PARTITIONS = 6;
    static Floe floe;

    @BeforeAll
    static void start() {
        // A short first-join delay (Kafka's default is 3 s) keeps the suite quick.
        floe = Floe.start("--group-initial-rebalance-delay", "200ms");
    }

    @AfterAll
    static void stop() {
        floe.close();
    }

    static String topicWith(int records) {
        String topic = Clients.unique("java-groups");
        try (Admin admin = Clients.admin(floe.bootstrap())) {
            Clients.createTopic(admin, topic, PARTITIONS);
        }
        produce(topic, 0, records);
        return topic;
    }

    static void produce(String topic, int from, int to) {
        try (KafkaProducer<byte[], byte[]> p = Clients.producer(floe.bootstrap(), Map.of())) {
            for (int i = from; i < to; i++) {
                p.send(new ProducerRecord<>(topic, ("k" + i).getBytes(StandardCharsets.UTF_8),
                        ("v" + i).getBytes(StandardCharsets.UTF_8)));
            }
            p.flush();
        }
    }

    static int index(ConsumerRecord<byte[], byte[]> r) {
        return Integer.parseInt(new String(r.value(), StandardCharsets.UTF_8).substring(1));
    }

    /** A group member on its own thread-confined consumer, polled by the test thread in turn. */
    static final class Member implements AutoCloseable {
        final KafkaConsumer<byte[], byte[]> consumer;
        final List<Integer> seen = new ArrayList<>();
        final Set<TopicPartition> assigned = ConcurrentHashMap.newKeySet();
        final List<Set<TopicPartition>> revocations = new ArrayList<>();

        Member(String group, String topic, Map<String, Object> extra) {
            Map<String, Object> conf = new HashMap<>(extra);
            conf.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            consumer = Clients.consumer(floe.bootstrap(), conf);
            consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> ps) {
                    if (!ps.isEmpty()) {
                        revocations.add(new HashSet<>(ps));
                    }
                    // commit what was processed before giving partitions up
                    consumer.commitSync();
                    assigned.removeAll(ps);
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> ps) {
                    assigned.addAll(ps);
                }

                @Override
                public void onPartitionsLost(Collection<TopicPartition> ps) {
                    assigned.removeAll(ps);
                }
            });
        }

        void poll() {
            for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(100))) {
                seen.add(index(r));
            }
            try {
                consumer.commitSync();
            } catch (RebalanceInProgressException e) {
                // A cooperative rebalance is under way: the next poll completes it and commits
                // (as the client's documentation says to do).
            }
        }

        @Override
        public void close() {
            consumer.close(Duration.ofSeconds(10));
        }
    }

    /** Polls every member in turn until {@code done} holds. */
    static void pollUntil(String what, List<Member> members, java.util.function.BooleanSupplier done) {
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (!done.getAsBoolean()) {
            assertTrue(System.nanoTime() < deadline, "timed out waiting for " + what);
            for (Member m : members) {
                m.poll();
            }
        }
    }

    static Set<Integer> union(List<Member> members) {
        return members.stream().flatMap(m -> m.seen.stream()).collect(Collectors.toSet());
    }

    static Set<Integer> range(int from, int to) {
        Set<Integer> s = new TreeSet<>();
        for (int i = from; i < to; i++) {
            s.add(i);
        }
        return s;
    }

    static void assertSplit(List<Member> members) {
        Set<TopicPartition> all = new HashSet<>();
        int sum = 0;
        for (Member m : members) {
            all.addAll(m.assigned);
            sum += m.assigned.size();
            assertTrue(!m.assigned.isEmpty(), "a member without partitions: " + members.stream().map(x -> x.assigned).toList());
        }
        assertEquals(PARTITIONS, all.size(), "every partition assigned");
        assertEquals(PARTITIONS, sum, "no partition assigned twice");
    }

    /** After the group closed: a new member of it reads exactly what was produced since. */
    static void assertResumesFromCommits(String group, String topic, int from, int to, Map<String, Object> conf) {
        produce(topic, from, to);
        try (Member m = new Member(group, topic, conf)) {
            pollUntil("the records produced after the commits", List.of(m), () -> m.seen.size() >= to - from);
            for (int i = 0; i < 5; i++) {
                m.poll();
            }
            assertEquals(range(from, to), new TreeSet<>(m.seen), "a new member reads on from the commits");
            assertEquals(to - from, m.seen.size(), "nothing read twice");
        }
    }

    void splitsConsumesAndResumes(Map<String, Object> conf) {
        String topic = topicWith(600);
        String group = Clients.unique("java-group");
        try (Member a = new Member(group, topic, conf); Member b = new Member(group, topic, conf)) {
            List<Member> both = List.of(a, b);
            pollUntil("both members to share the partitions and read all 600", both,
                    () -> union(both).size() == 600 && a.assigned.size() + b.assigned.size() == PARTITIONS
                            && !a.assigned.isEmpty() && !b.assigned.isEmpty());
            assertSplit(both);
            assertEquals(range(0, 600), union(both));
            try (Admin admin = Clients.admin(floe.bootstrap())) {
                Map<TopicPartition, OffsetAndMetadata> committed =
                        Clients.get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
                long sum = committed.values().stream().mapToLong(OffsetAndMetadata::offset).sum();
                assertEquals(600, sum, "committed offsets add up to the records read: " + committed);
                ConsumerGroupDescription d = Clients.get(admin.describeConsumerGroups(List.of(group)).all()).get(group);
                assertEquals(2, d.members().size(), "members described: " + d);
            }
        }
        assertResumesFromCommits(group, topic, 600, 660, conf);
    }

    @Test
    void classicRangeGroupSplitsPartitionsAndResumesFromCommits() {
        splitsConsumesAndResumes(Map.of(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, RangeAssignor.class.getName()));
    }

    @Test
    void consumerProtocolGroupSplitsPartitionsAndResumesFromCommits() {
        splitsConsumesAndResumes(Map.of(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer"));
    }

    @Test
    void cooperativeStickyRebalanceMovesOnlyWhatItMustAndLosesNothing() {
        Map<String, Object> conf = Map.of(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG,
                CooperativeStickyAssignor.class.getName());
        String topic = topicWith(300);
        String group = Clients.unique("java-coop");
        try (Member a = new Member(group, topic, conf)) {
            pollUntil("the first member to own every partition and read all 300", List.of(a),
                    () -> a.assigned.size() == PARTITIONS && a.seen.size() >= 300);
            Set<TopicPartition> before = new HashSet<>(a.assigned);
            try (Member b = new Member(group, topic, conf)) {
                List<Member> both = List.of(a, b);
                pollUntil("the second member to take its share", both, () -> b.assigned.size() == PARTITIONS / 2
                        && a.assigned.size() == PARTITIONS / 2);
                assertSplit(both);
                assertTrue(before.containsAll(a.assigned), "the first member kept its own partitions");
                // cooperative: the first member gave up only what moved, never everything at once
                for (Set<TopicPartition> r : a.revocations) {
                    assertTrue(r.size() <= PARTITIONS / 2, "revoked more than moved: " + r);
                }
                produce(topic, 300, 420);
                pollUntil("both to read the 120 new records", both, () -> union(both).containsAll(range(300, 420)));
                assertEquals(range(0, 420), union(both));
            }
        }
        assertResumesFromCommits(group, topic, 420, 450, conf);
    }

    @Test
    void staticMemberRestartsWithoutARebalance() {
        String topic = topicWith(120);
        String group = Clients.unique("java-static");
        Map<String, Object> a1 = Map.of(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "a",
                ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 30_000);
        Map<String, Object> b1 = Map.of(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "b",
                ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 30_000);
        try (Member b = new Member(group, topic, b1)) {
            Set<TopicPartition> aBefore;
            int generation;
            try (Member a = new Member(group, topic, a1)) {
                List<Member> both = List.of(a, b);
                pollUntil("both static members to share the partitions", both,
                        () -> a.assigned.size() + b.assigned.size() == PARTITIONS && !a.assigned.isEmpty()
                                && !b.assigned.isEmpty() && union(both).size() == 120);
                aBefore = new HashSet<>(a.assigned);
                generation = b.consumer.groupMetadata().generationId();
            } // a static member's close does not leave the group
            int revokedBefore = b.revocations.size();
            produce(topic, 120, 180);
            try (Member a = new Member(group, topic, a1)) {
                List<Member> both = List.of(a, b);
                pollUntil("the restarted member to get its partitions back and read on", both,
                        () -> a.assigned.equals(aBefore) && union(both).containsAll(range(120, 180)));
                assertEquals(generation, b.consumer.groupMetadata().generationId(), "no new generation");
                assertEquals(revokedBefore, b.revocations.size(), "the other member was never asked to give up partitions");
            }
        }
    }

    @Test
    void pausedAndResumedPartitionsAreFetchedWithoutASession() {
        String topic = topicWith(0);
        try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(floe.bootstrap(), Map.of())) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < PARTITIONS; p++) {
                tps.add(new TopicPartition(topic, p));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            List<TopicPartition> paused = tps.subList(0, PARTITIONS / 2);
            c.poll(Duration.ofMillis(200));
            c.pause(paused);
            produce(topic, 0, 300);
            long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
            Set<Integer> seen = new HashSet<>();
            // the unpaused half arrives; the paused half does not
            while (true) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                    assertTrue(!paused.contains(new TopicPartition(r.topic(), r.partition())), "a paused partition was returned");
                    seen.add(index(r));
                }
                long unpausedEnd = c.endOffsets(tps.subList(PARTITIONS / 2, PARTITIONS)).values().stream()
                        .mapToLong(Long::longValue).sum();
                if (seen.size() == unpausedEnd) {
                    break;
                }
                assertTrue(System.nanoTime() < deadline, "the unpaused partitions were not read");
            }
            c.resume(paused);
            while (seen.size() < 300) {
                assertTrue(System.nanoTime() < deadline, "resumed partitions were not read: " + seen.size());
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                    assertTrue(seen.add(index(r)), "record " + index(r) + " read twice");
                }
            }
            assertEquals(range(0, 300), new TreeSet<>(seen));
        }
    }
}
