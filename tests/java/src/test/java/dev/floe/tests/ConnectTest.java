package dev.floe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
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

    /**
     * A worker's properties in {@code dir}: this gateway, string converters, offsets flushed every
     * 200 ms, its REST API on {@code restPort}, sink consumers from the start of their topics;
     * then {@code modeLines} (where a standalone or a distributed worker keeps its state).
     */
    static Path workerProperties(Path dir, String bootstrap, int restPort, String... modeLines) throws IOException {
        List<String> lines = new ArrayList<>(List.of(
                "bootstrap.servers=" + bootstrap,
                "key.converter=org.apache.kafka.connect.storage.StringConverter",
                "value.converter=org.apache.kafka.connect.storage.StringConverter",
                "offset.flush.interval.ms=200",
                "listeners=http://127.0.0.1:" + restPort,
                "consumer.auto.offset.reset=earliest"));
        lines.addAll(List.of(modeLines));
        Path worker = dir.resolve("worker.properties");
        Files.writeString(worker, String.join("\n", lines) + "\n");
        return worker;
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
            Path worker = workerProperties(dir, floe.bootstrap(), Floe.freePort(),
                    "offset.storage.file.filename=" + dir.resolve("offsets"));
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
            Process p = Clients.childJvm(log, "org.apache.kafka.connect.cli.ConnectStandalone", worker.toString(),
                    src.toString(), snk.toString());
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
                Clients.stop(p);
            }
            // The topic holds each line once, in order.
            List<ConsumerRecord<byte[], byte[]>> records = Clients.readAll(floe.bootstrap(), topic, 1).get(0);
            assertEquals(300, records.size(), "records in the topic");
            for (int i = 0; i < records.size(); i++) {
                assertEquals(lines(i, i + 1).get(0), new String(records.get(i).value(), StandardCharsets.UTF_8));
            }
        }
    }

    /** POSTs a connector config to a distributed worker's REST API; retries while the worker starts. */
    static void createConnector(int restPort, String json, Process worker, Path log) {
        java.net.http.HttpClient http = java.net.http.HttpClient.newHttpClient();
        Clients.waitFor("the worker to accept a connector", Duration.ofSeconds(60), () -> {
            if (!worker.isAlive()) {
                throw new AssertionError("the Connect worker exited:\n" + Floe.tail(log, 60));
            }
            try {
                var resp = http.send(java.net.http.HttpRequest.newBuilder(
                                java.net.URI.create("http://127.0.0.1:" + restPort + "/connectors"))
                        .header("Content-Type", "application/json")
                        .POST(java.net.http.HttpRequest.BodyPublishers.ofString(json)).build(),
                        java.net.http.HttpResponse.BodyHandlers.ofString());
                if (resp.statusCode() == 201 || resp.statusCode() == 409 && resp.body().contains("already exists")) {
                    return true;
                }
                return null; // 404/409 while the herder joins its group
            } catch (IOException e) {
                return null;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError(e);
            }
        });
    }

    @Test
    void aDistributedWorkerKeepsItsStateInCompactedTopics(@TempDir Path dir) throws Exception {
        try (Floe floe = Floe.start("--group-initial-rebalance-delay", "200ms")) {
            String topic = Clients.unique("java-connect-dist");
            String group = Clients.unique("java-connect-cluster");
            try (Admin admin = Clients.admin(floe.bootstrap())) {
                Clients.createTopic(admin, topic, 1);
            }
            Path source = dir.resolve("source.txt");
            Path sink = dir.resolve("sink.txt");
            Files.writeString(source, "");
            int rest = Floe.freePort();
            Path worker = workerProperties(dir, floe.bootstrap(), rest,
                    "group.id=" + group,
                    "config.storage.topic=" + group + "-configs",
                    "offset.storage.topic=" + group + "-offsets",
                    "status.storage.topic=" + group + "-status",
                    "config.storage.replication.factor=1",
                    "offset.storage.replication.factor=1",
                    "status.storage.replication.factor=1");
            Path log = dir.resolve("connect.log");
            Process p = Clients.childJvm(log, "org.apache.kafka.connect.cli.ConnectDistributed", worker.toString());
            try {
                createConnector(rest, "{\"name\":\"floe-dist-source\",\"config\":{\"connector.class\":"
                        + "\"org.apache.kafka.connect.file.FileStreamSourceConnector\",\"tasks.max\":\"1\","
                        + "\"file\":\"" + source + "\",\"topic\":\"" + topic + "\"}}", p, log);
                createConnector(rest, "{\"name\":\"floe-dist-sink\",\"config\":{\"connector.class\":"
                        + "\"org.apache.kafka.connect.file.FileStreamSinkConnector\",\"tasks.max\":\"1\","
                        + "\"file\":\"" + sink + "\",\"topics\":\"" + topic + "\"}}", p, log);
                List<String> want = lines(0, 150);
                write(source, String.join("\n", want) + "\n");
                waitForSink(sink, want, p, log);
            } finally {
                Clients.stop(p);
            }
            // Connect created its three internal topics compacted, and stored the connectors there.
            try (Admin admin = Clients.admin(floe.bootstrap())) {
                for (String t : List.of(group + "-configs", group + "-offsets", group + "-status")) {
                    var res = new org.apache.kafka.common.config.ConfigResource(
                            org.apache.kafka.common.config.ConfigResource.Type.TOPIC, t);
                    assertEquals("compact", Clients.get(admin.describeConfigs(List.of(res)).all()).get(res)
                            .get("cleanup.policy").value(), t);
                }
            }
            int configs = Clients.readAll(floe.bootstrap(), group + "-configs", 1).get(0).size();
            assertTrue(configs >= 2, "connector configs stored: " + configs);
        }
    }
}
