package dev.floe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Supplier;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/** Kafka clients as a user configures them (defaults unless a test says otherwise), and read-back. */
final class Clients {
    static final Duration TIMEOUT = Duration.ofSeconds(30);
    private static int seq;

    private Clients() {}

    static synchronized String unique(String name) {
        return name + "-" + ProcessHandle.current().pid() + "-" + (++seq);
    }

    static Admin admin(String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "floe-java-admin");
        return Admin.create(p);
    }

    /** A producer with the client's defaults (idempotent, acks=all), plus {@code extra}. */
    static KafkaProducer<byte[], byte[]> producer(String bootstrap, Map<String, Object> extra) {
        Map<String, Object> p = new HashMap<>();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "floe-java-producer");
        p.putAll(extra);
        return new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
    }

    static KafkaConsumer<byte[], byte[]> consumer(String bootstrap, Map<String, Object> extra) {
        Map<String, Object> p = new HashMap<>();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "floe-java-consumer");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.putAll(extra);
        return new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    static void createTopic(Admin admin, String topic, int partitions) {
        get(admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all());
    }

    static <T> T get(org.apache.kafka.common.KafkaFuture<T> f) {
        try {
            return f.get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        } catch (ExecutionException e) {
            throw new AssertionError("request failed: " + e.getCause(), e.getCause());
        } catch (TimeoutException e) {
            throw new AssertionError("no answer within " + TIMEOUT, e);
        }
    }

    /**
     * Every record of {@code topic} from offset 0 to the end offsets taken first, by an assigned
     * (group-less) consumer: partition → records in offset order.
     */
    static Map<Integer, List<ConsumerRecord<byte[], byte[]>>> readAll(String bootstrap, String topic, int partitions) {
        try (KafkaConsumer<byte[], byte[]> c = consumer(bootstrap, Map.of())) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < partitions; p++) {
                tps.add(new TopicPartition(topic, p));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> ends = c.endOffsets(tps, TIMEOUT);
            Map<Integer, List<ConsumerRecord<byte[], byte[]>>> out = new HashMap<>();
            for (int p = 0; p < partitions; p++) {
                out.put(p, new ArrayList<>());
            }
            long deadline = System.nanoTime() + TIMEOUT.toNanos();
            while (tps.stream().anyMatch(tp -> c.position(tp, TIMEOUT) < ends.get(tp))) {
                assertTrue(System.nanoTime() < deadline, "read timed out; end offsets " + ends);
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                    out.get(r.partition()).add(r);
                }
            }
            assertTrue(c.poll(Duration.ofMillis(300)).isEmpty(), "records past the end offsets " + ends);
            for (var e : out.entrySet()) {
                List<ConsumerRecord<byte[], byte[]>> rs = e.getValue();
                for (int i = 0; i < rs.size(); i++) {
                    assertEquals(i, rs.get(i).offset(), "partition " + e.getKey() + ": offsets not contiguous from 0");
                }
            }
            return out;
        }
    }

    /** Polls {@code condition} until it returns non-null, or fails after {@code timeout}. */
    static <T> T waitFor(String what, Duration timeout, Supplier<T> condition) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            T v = condition.get();
            if (v != null) {
                return v;
            }
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out after " + timeout + " waiting for " + what);
            }
            Floe.sleep(100);
        }
    }

    /** Runs {@code mainClass} in a child JVM on this suite's classpath, its output to {@code log}. */
    static Process childJvm(java.nio.file.Path log, String mainClass, String... args) {
        List<String> cmd = new ArrayList<>(List.of(
                java.nio.file.Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), mainClass));
        cmd.addAll(List.of(args));
        try {
            return new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    /** SIGTERM, then SIGKILL if it has not exited within 30 s. */
    static void stop(Process p) throws InterruptedException {
        p.destroy();
        if (!p.waitFor(30, TimeUnit.SECONDS)) {
            p.destroyForcibly();
        }
    }
}
