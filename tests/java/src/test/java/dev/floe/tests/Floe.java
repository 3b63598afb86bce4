package dev.floe.tests;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.HttpURLConnection;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * One {@code floe} gateway process on a free port: started, stopped (SIGTERM, which must exit 0),
 * killed (SIGKILL) and restarted on the same port and storage.
 *
 * <p>Binary: {@code $FLOE_BIN}, else the repository's {@code target/debug/floe}. Backend: embedded
 * (a temporary data directory) unless {@code FLOE_TEST_BACKEND=aws}, which gives each storage its
 * own bucket and table on the moto server at {@code FLOE_TEST_MOTO_ENDPOINT}, created by
 * {@code floe init} before the first start. Gateways built with {@link #sharing} use another's
 * storage (several gateways on one backend).
 *
 * <p>With {@code -Dfloe.reference=kafka} (run.sh: {@code FLOE_JAVA_REFERENCE=kafka}) it starts
 * Apache Kafka instead, the reference every scenario should also pass: a single KRaft node
 * (broker and controller) from the {@code kafka_2.13} artifact on the test classpath, in a child
 * JVM, its log directories in the same storage directory. Tests that only Floe can pass (several
 * gateways on one storage, Floe's metrics) check {@link #reference()}.
 */
public final class Floe implements AutoCloseable {
    static final Duration START_TIMEOUT = Duration.ofSeconds(30);
    static final Duration STOP_TIMEOUT = Duration.ofSeconds(20);

    /** Where a gateway keeps its data: a directory, or a bucket and table on moto. */
    static final class Storage {
        final Path dataDir;
        final String awsName;
        boolean initialized;

        Storage(Path dataDir, String awsName) {
            this.dataDir = dataDir;
            this.awsName = awsName;
        }
    }

    final int port;
    final Path workDir;
    final Path log;
    final Storage storage;
    final List<String> extraArgs;
    Integer metricsPort;
    private Process process;
    private boolean killed;

    private Floe(Path workDir, Storage storage, List<String> extraArgs) {
        this.port = freePort();
        this.workDir = workDir;
        this.log = workDir.resolve("floe.log");
        this.storage = storage;
        this.extraArgs = List.copyOf(extraArgs);
    }

    /** A started gateway with its own storage; {@code args} are more floe flags. */
    public static Floe start(String... args) {
        Path dir = tempDir("floe-java-");
        Floe f = new Floe(dir, newStorage(dir), List.of(args));
        f.start();
        return f;
    }

    /** A gateway (not yet started) on {@code other}'s storage. */
    public static Floe sharing(Floe other, String... args) {
        return new Floe(tempDir("floe-java-gw-"), other.storage, List.of(args));
    }

    /** A gateway (not yet started) on a new storage. */
    public static Floe unstarted(String... args) {
        Path dir = tempDir("floe-java-");
        return new Floe(dir, newStorage(dir), List.of(args));
    }

    public String bootstrap() {
        return "127.0.0.1:" + port;
    }

    /** Whether this run is against Apache Kafka (the reference), not floe. */
    public static boolean reference() {
        return "kafka".equals(System.getProperty("floe.reference"));
    }

    public static String backend() {
        String b = System.getenv().getOrDefault("FLOE_TEST_BACKEND", "embedded");
        if (!b.equals("embedded") && !b.equals("aws")) {
            throw new IllegalStateException("FLOE_TEST_BACKEND=" + b + ": expected embedded or aws");
        }
        return b;
    }

    static Path binary() {
        String env = System.getenv("FLOE_BIN");
        if (env != null && !env.isEmpty()) {
            return Path.of(env);
        }
        // tests/java -> the repository root
        return Path.of(System.getProperty("user.dir")).resolve("../../target/debug/floe").normalize();
    }

    private static Storage newStorage(Path dir) {
        Path data = dir.resolve("data");
        try {
            Files.createDirectories(data);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        String aws = backend().equals("aws")
                ? "floe-java-" + HexFormat.of().formatHex(new SecureRandom().generateSeed(6))
                : null;
        return new Storage(data, aws);
    }

    private List<String> backendArgs() {
        if (storage.awsName == null) {
            return List.of();
        }
        String endpoint = System.getenv("FLOE_TEST_MOTO_ENDPOINT");
        if (endpoint == null || endpoint.isEmpty()) {
            throw new IllegalStateException("FLOE_TEST_BACKEND=aws needs FLOE_TEST_MOTO_ENDPOINT");
        }
        return List.of("--backend", "aws", "--bucket", storage.awsName, "--table", storage.awsName,
                "--endpoint-url", endpoint, "--region", "us-east-1");
    }

    private ProcessBuilder builder(List<String> cmd) {
        ProcessBuilder pb = new ProcessBuilder(cmd);
        Map<String, String> env = pb.environment();
        // FLOE_* variables would override the flags (FLOE_BIN and the test's own are ours).
        env.keySet().removeIf(k -> k.startsWith("FLOE_"));
        env.putIfAbsent("AWS_ACCESS_KEY_ID", "test");
        env.putIfAbsent("AWS_SECRET_ACCESS_KEY", "test");
        env.putIfAbsent("AWS_REGION", "us-east-1");
        env.putIfAbsent("RUST_BACKTRACE", "1");
        return pb;
    }

    /** Serves metrics at {@code /metrics} on a free port from the next start. */
    public Floe withMetrics() {
        metricsPort = freePort();
        return this;
    }

    public synchronized void start() {
        if (process != null && process.isAlive()) {
            throw new IllegalStateException("already running");
        }
        if (reference()) {
            startKafka();
            return;
        }
        if (storage.awsName != null && !storage.initialized) {
            List<String> init = new ArrayList<>(List.of(binary().toString(), "init"));
            init.addAll(backendArgs());
            try {
                Process p = builder(init).redirectErrorStream(true)
                        .redirectOutput(workDir.resolve("init.log").toFile()).start();
                if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
                    throw new AssertionError("floe init failed: " + tail(workDir.resolve("init.log"), 20));
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError(e);
            }
            storage.initialized = true;
        }
        List<String> cmd = new ArrayList<>(List.of(binary().toString(),
                "--listen", bootstrap(), "--advertised-listener", bootstrap(),
                "--data-dir", storage.dataDir.toString(),
                "--flush-interval", "5ms", "--log-level", "info"));
        if (metricsPort != null) {
            cmd.addAll(List.of("--metrics-listen", "127.0.0.1:" + metricsPort));
        }
        cmd.addAll(backendArgs());
        cmd.addAll(extraArgs);
        try {
            process = builder(cmd).redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot start " + binary() + " (build it or set FLOE_BIN)", e);
        }
        killed = false;
        awaitListening();
    }

    private void awaitListening() {
        long deadline = System.nanoTime() + START_TIMEOUT.toNanos();
        while (System.nanoTime() < deadline) {
            if (!process.isAlive()) {
                throw new AssertionError("floe exited (" + process.exitValue() + ") while starting:\n" + logTail(40));
            }
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress("127.0.0.1", port), 200);
                return;
            } catch (IOException e) {
                sleep(50);
            }
        }
        process.destroyForcibly();
        throw new AssertionError("floe did not listen within " + START_TIMEOUT + ":\n" + logTail(40));
    }

    /** Apache Kafka in KRaft mode: formats the log directory once, then runs the node. */
    private void startKafka() {
        if (storage.awsName != null) {
            throw new IllegalStateException("the reference broker runs on its own disk; FLOE_TEST_BACKEND=aws is for floe");
        }
        Path props = workDir.resolve("server.properties");
        // the one floe flag the tests give that Kafka has too
        long delayMs = 3000;
        int i = extraArgs.indexOf("--group-initial-rebalance-delay");
        if (i >= 0) {
            String v = extraArgs.get(i + 1);
            delayMs = v.endsWith("ms") ? Long.parseLong(v.substring(0, v.length() - 2))
                    : 1000 * Long.parseLong(v.substring(0, v.length() - 1));
        }
        try {
            if (!storage.initialized) {
                int controller = freePort();
                Files.writeString(props, String.join("\n",
                        "process.roles=broker,controller", "node.id=1",
                        "controller.quorum.voters=1@127.0.0.1:" + controller,
                        "listeners=PLAINTEXT://127.0.0.1:" + port + ",CONTROLLER://127.0.0.1:" + controller,
                        "advertised.listeners=PLAINTEXT://127.0.0.1:" + port,
                        "controller.listener.names=CONTROLLER", "inter.broker.listener.name=PLAINTEXT",
                        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                        "log.dirs=" + storage.dataDir.resolve("kafka-logs"), "num.partitions=1",
                        "offsets.topic.replication.factor=1", "offsets.topic.num.partitions=4",
                        "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
                        "share.coordinator.state.topic.replication.factor=1",
                        "group.initial.rebalance.delay.ms=" + delayMs, ""));
                Process format = new ProcessBuilder(java(), "-cp", System.getProperty("java.class.path"),
                        "kafka.tools.StorageTool", "format", "-t",
                        org.apache.kafka.common.Uuid.randomUuid().toString(), "-c", props.toString())
                        .redirectErrorStream(true).redirectOutput(workDir.resolve("format.log").toFile()).start();
                if (!format.waitFor(60, TimeUnit.SECONDS) || format.exitValue() != 0) {
                    throw new AssertionError("kafka-storage format failed:\n" + tail(workDir.resolve("format.log"), 30));
                }
                storage.initialized = true;
            }
            process = new ProcessBuilder(java(), "-Xmx768m", "-cp", System.getProperty("java.class.path"),
                    "kafka.Kafka", props.toString())
                    .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
        killed = false;
        awaitListening();
    }

    private static String java() {
        return Path.of(System.getProperty("java.home"), "bin", "java").toString();
    }

    public boolean running() {
        return process != null && process.isAlive();
    }

    /** SIGKILL: no drain, no release; its partitions move after the session timeout. */
    public void kill9() {
        if (process != null) {
            process.destroyForcibly();
            try {
                process.waitFor(STOP_TIMEOUT.toSeconds(), TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            killed = true;
        }
    }

    /** SIGTERM and wait; returns the exit code. */
    public int stop() {
        if (process == null || !process.isAlive()) {
            return process == null ? 0 : process.exitValue();
        }
        process.destroy();
        try {
            if (!process.waitFor(STOP_TIMEOUT.toSeconds(), TimeUnit.SECONDS)) {
                process.destroyForcibly().waitFor();
                throw new AssertionError("floe still running " + STOP_TIMEOUT + " after SIGTERM:\n" + logTail(40));
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
        // A JVM ended by SIGTERM exits 143 after its shutdown hooks (the reference broker).
        return reference() && process.exitValue() == 143 ? 0 : process.exitValue();
    }

    public void restart() {
        int rc = stop();
        if (rc != 0) {
            throw new AssertionError("floe exited " + rc + " on SIGTERM:\n" + logTail(40));
        }
        start();
    }

    /** Stops the gateway; one that died by itself or did not exit 0 on SIGTERM fails the test. */
    @Override
    public void close() {
        if (process == null || killed) {
            return;
        }
        if (!process.isAlive()) {
            throw new AssertionError("floe died during the test (exit " + process.exitValue() + "):\n" + logTail(60));
        }
        int rc = stop();
        if (rc != 0) {
            throw new AssertionError("floe exited " + rc + " on SIGTERM:\n" + logTail(60));
        }
    }

    /** The value of an unlabelled sample, or of {@code name{labels}}, at the metrics endpoint. */
    public double metric(String sample) {
        if (metricsPort == null) {
            throw new IllegalStateException("started without withMetrics()");
        }
        try {
            HttpURLConnection c = (HttpURLConnection) URI.create("http://127.0.0.1:" + metricsPort + "/metrics")
                    .toURL().openConnection();
            c.setConnectTimeout(5000);
            c.setReadTimeout(5000);
            String body = new String(c.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            for (String line : body.split("\n")) {
                if (line.startsWith(sample + " ")) {
                    return Double.parseDouble(line.substring(sample.length() + 1).trim());
                }
            }
            throw new AssertionError("no sample " + sample + " at the metrics endpoint");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    public String logTail(int lines) {
        return tail(log, lines);
    }

    static String tail(Path file, int lines) {
        try {
            List<String> all = Files.readAllLines(file, StandardCharsets.UTF_8);
            return String.join("\n", all.subList(Math.max(0, all.size() - lines), all.size()));
        } catch (IOException e) {
            return "(no log: " + e.getMessage() + ")";
        }
    }

    static int freePort() {
        try (ServerSocket s = new ServerSocket(0)) {
            s.setReuseAddress(true);
            return s.getLocalPort();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static Path tempDir(String prefix) {
        try {
            return Files.createTempDirectory(prefix);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
    }
}
