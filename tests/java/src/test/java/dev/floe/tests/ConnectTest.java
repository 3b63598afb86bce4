package dev.floe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Kafka Connect in standalone mode, as its own JVM (the worker, with this suite's classpath):
 * a file source connector writes a file's lines to a topic and a file sink connector writes the
 * topic back to another file. Every line arrives once and in order, also for lines written
 * after a gateway restart.
 */
class ConnectTest {
    static void write(Path file, String text) throws IOException {
        Files.writeString(file, text, StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
    }

    static List<String> lines(int from, int to) {
        List<String> out = new ArrayList<>();
        for (int i = from; i < to; i++) {
            out.add("line " + i + " " + "x".repeat(i % 50));
        }
        return out;
    }

    static List<String> readLines(Path file) {
        try {
            return Files.exists(file) ? Files.readAllLines(file, StandardCharsets.UTF_8) : List.of();
        } catch (IOException e) {
            return List.of();
        }
    }

    static void waitForSink(Path sink, List<String> want, Process worker, Path log) {
        Clients.waitFor("the sink file to hold " + want.size() + " lines", Duration.ofSeconds(60), () -> {
            if (!worker.isAlive()) {
                throw new AssertionError("the Connect worker exited:\n" + Floe.tail(log, 60));
            }
            List<String> got = readLines(sink);
            if (got.size() > want.size()) {
                throw new AssertionError("the sink holds " + got.size() + " lines, more than the " + want.size() + " written");
            }
            return got.equals(want) ? true : null;
        });
    }

    @Test
    void aSourceAndASinkConnectorCopyAFileThroughATopic(@TempDir Path dir) throws Exception {
        try (Floe floe = Floe.start("--group-initial-rebalance-delay", "200ms")) {
            String topic = Clients.unique("java-connect");
            try (Admin admin = Clients.admin(floe.bootstrap())) {
                Clients.createTopic(admin, topic, 1);
            }
            Path source = dir.resolve("source.txt");
            Path sink = dir.resolve("sink.txt");
            Files.writeString(source, "");
            Path worker = dir.resolve("worker.properties");
            Files.writeString(worker, String.join("\n",
                    "bootstrap.servers=" + floe.bootstrap(),
                    "key.converter=org.apache.kafka.connect.storage.StringConverter",
                    "value.converter=org.apache.kafka.connect.storage.StringConverter",
                    "offset.storage.file.filename=" + dir.resolve("offsets"),
                    "offset.flush.interval.ms=200",
                    "listeners=http://127.0.0.1:" + Floe.freePort(),
                    // the sink's consumer reads from the start of the topic
                    "consumer.auto.offset.reset=earliest", ""));
            Path src = dir.resolve("source.properties");
            Files.writeString(src, String.join("\n", "name=floe-file-source",
                    "connector.class=org.apache.kafka.connect.file.FileStreamSourceConnector", "tasks.max=1",
                    "file=" + source, "topic=" + topic, ""));
            Path snk = dir.resolve("sink.properties");
            Files.writeString(snk, String.join("\n", "name=floe-file-sink",
                    "connector.class=org.apache.kafka.connect.file.FileStreamSinkConnector", "tasks.max=1",
                    "file=" + sink, "topics=" + topic, ""));
            Path log = dir.resolve("connect.log");
            // The test JVM's classpath (surefire's booter jar names every dependency).
            Process p = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                    "-cp", System.getProperty("java.class.path"),
                    "org.apache.kafka.connect.cli.ConnectStandalone", worker.toString(), src.toString(), snk.toString())
                    .redirectErrorStream(true).redirectOutput(log.toFile()).start();
            try {
                List<String> want = new ArrayList<>(lines(0, 200));
                write(source, String.join("\n", want) + "\n");
                waitForSink(sink, want, p, log);

                floe.restart();
                List<String> more = lines(200, 300);
                write(source, String.join("\n", more) + "\n");
                want.addAll(more);
                waitForSink(sink, want, p, log);
            } finally {
                p.destroy();
                if (!p.waitFor(30, TimeUnit.SECONDS)) {
                    p.destroyForcibly();
                }
            }
            // The topic holds each line once, in order.
            List<ConsumerRecord<byte[], byte[]>> records = Clients.readAll(floe.bootstrap(), topic, 1).get(0);
            assertEquals(300, records.size(), "records in the topic");
            for (int i = 0; i < records.size(); i++) {
                assertEquals(lines(i, i + 1).get(0), new String(records.get(i).value(), StandardCharsets.UTF_8));
            }
        }
    }
}
