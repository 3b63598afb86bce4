package dev.floe.tests;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.Future;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The producer with the Java client's defaults (idempotent, acks=all) and with every codec. */
class ProducerTest {
    static Floe floe;

    @BeforeAll
    static void start() {
        floe = Floe.unstarted();
        if (!Floe.reference()) {
            floe.withMetrics();
        }
        floe.start();
    }

    @AfterAll
    static void stop() {
        floe.close();
    }

    /** What was sent, to compare with what is read back. */
    record Sent(byte[] key, byte[] value, long timestamp, List<Header> headers, RecordMetadata md) {}

    static List<Sent> produce(KafkaProducer<byte[], byte[]> p, String topic, int n, long seed) throws Exception {
        Random rnd = new Random(seed);
        List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>();
        List<Future<RecordMetadata>> futures = new ArrayList<>();
        long base = 1_700_000_000_000L;
        for (int i = 0; i < n; i++) {
            byte[] key = ("key-" + (i % 37)).getBytes(StandardCharsets.UTF_8);
            // compressible text and random bytes, sometimes empty or null
            byte[] value = switch (i % 10) {
                case 0 -> null;
                case 1 -> new byte[0];
                case 2, 3, 4 -> ("value " + i + " ").repeat(1 + rnd.nextInt(50)).getBytes(StandardCharsets.UTF_8);
                default -> {
                    byte[] b = new byte[rnd.nextInt(2000)];
                    rnd.nextBytes(b);
                    yield b;
                }
            };
            List<Header> headers = new ArrayList<>();
            headers.add(new RecordHeader("i", Integer.toString(i).getBytes(StandardCharsets.UTF_8)));
            if (i % 3 == 0) {
                headers.add(new RecordHeader("dup", new byte[] {1}));
                headers.add(new RecordHeader("dup", null));
            }
            ProducerRecord<byte[], byte[]> r = new ProducerRecord<>(topic, null, base + i, key, value, headers);
            records.add(r);
            futures.add(p.send(r));
        }
        p.flush();
        List<Sent> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            ProducerRecord<byte[], byte[]> r = records.get(i);
            List<Header> hs = new ArrayList<>();
            r.headers().forEach(hs::add);
            out.add(new Sent(r.key(), r.value(), r.timestamp(), hs, futures.get(i).get()));
        }
        return out;
    }

    static void verify(List<Sent> sent, Map<Integer, List<ConsumerRecord<byte[], byte[]>>> read) {
        int total = read.values().stream().mapToInt(List::size).sum();
        assertEquals(sent.size(), total, "records read back");
        Map<String, Integer> keyPartition = new HashMap<>();
        for (Sent s : sent) {
            ConsumerRecord<byte[], byte[]> r = read.get(s.md().partition()).get((int) s.md().offset());
            String where = "record at " + s.md();
            assertArrayEquals(s.key(), r.key(), where + ": key");
            assertArrayEquals(s.value(), r.value(), where + ": value");
            assertEquals(s.timestamp(), r.timestamp(), where + ": timestamp");
            assertEquals(s.timestamp(), s.md().timestamp(), where + ": acknowledged timestamp");
            List<Header> got = new ArrayList<>();
            r.headers().forEach(got::add);
            assertEquals(s.headers().size(), got.size(), where + ": header count");
            for (int h = 0; h < got.size(); h++) {
                assertEquals(s.headers().get(h).key(), got.get(h).key(), where + ": header name");
                assertArrayEquals(s.headers().get(h).value(), got.get(h).value(), where + ": header value");
            }
            String k = new String(s.key(), StandardCharsets.UTF_8);
            assertEquals(keyPartition.computeIfAbsent(k, x -> r.partition()), r.partition(),
                    "key " + k + " in two partitions");
        }
    }

    @ParameterizedTest(name = "compression.type={0}")
    @ValueSource(strings = {"none", "gzip", "snappy", "lz4", "zstd"})
    void everyCodecRoundTripsByteExact(String codec) throws Exception {
        String topic = Clients.unique("java-codec-" + codec);
        try (Admin admin = Clients.admin(floe.bootstrap())) {
            Clients.createTopic(admin, topic, 3);
        }
        List<Sent> sent;
        try (KafkaProducer<byte[], byte[]> p = Clients.producer(floe.bootstrap(),
                Map.of(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec, ProducerConfig.LINGER_MS_CONFIG, 10))) {
            sent = produce(p, topic, 600, codec.hashCode());
        }
        verify(sent, Clients.readAll(floe.bootstrap(), topic, 3));
    }

    @Test
    void defaultsAreIdempotentWithAcksAll() throws Exception {
        String topic = Clients.unique("java-defaults");
        // Floe counts requests by API; the reference has no such metric.
        double before = Floe.reference() ? 0 : floe.metric("floe_requests_total{api=\"InitProducerId\"}");
        List<Sent> sent;
        try (KafkaProducer<byte[], byte[]> p = Clients.producer(floe.bootstrap(), Map.of())) {
            // auto-created by the producer's metadata request (one partition by default)
            sent = produce(p, topic, 300, 7);
        }
        assertTrue(Floe.reference() || floe.metric("floe_requests_total{api=\"InitProducerId\"}") > before,
                "the default producer is idempotent: it asks for a producer id");
        for (int i = 0; i < sent.size(); i++) {
            assertEquals(i, sent.get(i).md().offset(), "offsets in send order");
        }
        verify(sent, Clients.readAll(floe.bootstrap(), topic, 1));
    }
}
