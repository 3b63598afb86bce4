package dev.floe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A Kafka Streams application with state: a word count whose {@code groupBy} goes through a
 * repartition topic and whose {@code count} keeps a store backed by a compacted changelog topic,
 * both created by Streams itself. It counts exactly while the gateway runs, and keeps counting,
 * losing nothing, through a gateway restart (at-least-once: a count may be applied again after
 * the restart, never lost).
 */
class StreamsTest {
    static final List<String> WORDS = List.of("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
            "hotel", "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo");

    /** Lines {@code from..to}, each a few words, and the counts they add. */
    static List<String> lines(int from, int to, Map<String, Long> expected) {
        List<String> out = new ArrayList<>();
        for (int i = from; i < to; i++) {
            List<String> ws = new ArrayList<>();
            for (int j = 0; j < 1 + i % 4; j++) {
                String w = WORDS.get((i * 7 + j * 5) % WORDS.size());
                ws.add(w);
                expected.merge(w, 1L, Long::sum);
            }
            out.add(String.join(" ", ws));
        }
        return out;
    }

    static void produce(String bootstrap, String topic, List<String> lines, int from) {
        try (KafkaProducer<String, String> p = new KafkaProducer<>(Map.of("bootstrap.servers", bootstrap),
                new StringSerializer(), new StringSerializer())) {
            for (int i = 0; i < lines.size(); i++) {
                p.send(new ProducerRecord<>(topic, "line-" + (from + i), lines.get(i)));
            }
            p.flush();
        }
    }

    /** Polls the output topic into {@code latest} (word → its newest count) until {@code done}. */
    static void tail(KafkaConsumer<String, Long> c, Map<String, Long> latest, String what,
            java.util.function.BooleanSupplier done, KafkaStreams streams, List<Throwable> errors) {
        long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
        while (!done.getAsBoolean()) {
            assertTrue(errors.isEmpty(), "the application failed: " + errors);
            assertTrue(System.nanoTime() < deadline, "timed out waiting for " + what + "; state "
                    + streams.state() + ", counts " + latest);
            for (ConsumerRecord<String, Long> r : c.poll(Duration.ofMillis(200))) {
                latest.put(r.key(), r.value());
            }
        }
    }

    /** The application is (back) in RUNNING: a rebalance in between is normal, a failure is not. */
    static void awaitRunning(KafkaStreams streams, List<Throwable> errors) {
        Clients.waitFor("the application to be RUNNING", Duration.ofSeconds(60), () -> {
            assertTrue(errors.isEmpty(), "the application failed: " + errors);
            KafkaStreams.State st = streams.state();
            assertTrue(st == KafkaStreams.State.RUNNING || st == KafkaStreams.State.REBALANCING,
                    "the application is " + st);
            return st == KafkaStreams.State.RUNNING ? true : null;
        });
    }

    @Test
    void aWordCountKeepsCountingThroughAGatewayRestart(@TempDir Path stateDir) {
        try (Floe floe = Floe.start("--group-initial-rebalance-delay", "200ms")) {
            String in = Clients.unique("java-streams-in");
            String out = Clients.unique("java-streams-out");
            String app = Clients.unique("java-streams-app");
            try (Admin admin = Clients.admin(floe.bootstrap())) {
                Clients.createTopic(admin, in, 3);
                Clients.createTopic(admin, out, 3);
            }
            StreamsBuilder b = new StreamsBuilder();
            b.stream(in, Consumed.with(Serdes.String(), Serdes.String()))
                    .flatMapValues(v -> Arrays.asList(v.split(" ")))
                    .groupBy((k, w) -> w, Grouped.with("by-word", Serdes.String(), Serdes.String()))
                    .count(Materialized.as("word-counts"))
                    .toStream()
                    .to(out, Produced.with(Serdes.String(), Serdes.Long()));
            Properties p = new Properties();
            p.put(StreamsConfig.APPLICATION_ID_CONFIG, app);
            p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, floe.bootstrap());
            p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
            p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
            p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 2);
            List<Throwable> errors = new java.util.concurrent.CopyOnWriteArrayList<>();
            Map<String, Long> expected = new HashMap<>();
            Map<String, Long> latest = new ConcurrentHashMap<>();
            try (KafkaStreams streams = new KafkaStreams(b.build(), p);
                    KafkaConsumer<String, Long> c = new KafkaConsumer<>(Map.of("bootstrap.servers", floe.bootstrap(),
                            "auto.offset.reset", "earliest"), new StringDeserializer(), new LongDeserializer())) {
                streams.setUncaughtExceptionHandler(e -> {
                    errors.add(e);
                    return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
                });
                streams.start();
                List<TopicPartition> outParts = List.of(new TopicPartition(out, 0), new TopicPartition(out, 1),
                        new TopicPartition(out, 2));
                c.assign(outParts);
                c.seekToBeginning(outParts);

                produce(floe.bootstrap(), in, lines(0, 300, expected), 0);
                tail(c, latest, "the counts of the first 300 lines", () -> latest.equals(expected), streams, errors);
                awaitRunning(streams, errors);

                // Streams created its internal topics: the repartition topic and a compacted changelog.
                try (Admin admin = Clients.admin(floe.bootstrap())) {
                    Set<String> names = Clients.get(admin.listTopics().names());
                    String changelog = app + "-word-counts-changelog";
                    assertTrue(names.contains(changelog), "topics: " + names);
                    assertTrue(names.contains(app + "-by-word-repartition"), "topics: " + names);
                    ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, changelog);
                    Config conf = Clients.get(admin.describeConfigs(List.of(res)).all()).get(res);
                    assertEquals("compact", conf.get("cleanup.policy").value());
                }

                floe.restart();
                produce(floe.bootstrap(), in, lines(300, 600, expected), 300);
                tail(c, latest, "the counts of all 600 lines after the restart",
                        () -> expected.keySet().stream().allMatch(w -> latest.getOrDefault(w, 0L) >= expected.get(w)),
                        streams, errors);
                long over = expected.keySet().stream().mapToLong(w -> latest.get(w) - expected.get(w)).sum();
                System.out.println("word counts after the restart: " + over + " counted again (at-least-once)");
                awaitRunning(streams, errors);
                assertEquals(expected.keySet(), latest.keySet(), "no word that was never sent");
            }
        }
    }
}
