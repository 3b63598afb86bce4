// The Go client suites: two independent Kafka implementations, franz-go and IBM sarama, against
// the floe binary (see README.md). This file is the harness: a gateway process per test.
package floetests

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Floe is one gateway process on a free port and its storage: a data directory, or a bucket and
// table on the moto server named by FLOE_TEST_MOTO_ENDPOINT when FLOE_TEST_BACKEND=aws.
type Floe struct {
	t       *testing.T
	Port    int
	dir     string
	dataDir string
	awsName string
	args    []string
	log     string
	cmd     *exec.Cmd
	exited  chan struct{}
	killed  bool
}

func binary() string {
	if b := os.Getenv("FLOE_BIN"); b != "" {
		return b
	}
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "..", "target", "debug", "floe")
}

func backend(t *testing.T) string {
	b := os.Getenv("FLOE_TEST_BACKEND")
	switch b {
	case "", "embedded":
		return "embedded"
	case "aws":
		if os.Getenv("FLOE_TEST_MOTO_ENDPOINT") == "" {
			t.Fatal("FLOE_TEST_BACKEND=aws needs FLOE_TEST_MOTO_ENDPOINT")
		}
		return "aws"
	}
	t.Fatalf("FLOE_TEST_BACKEND=%s: expected embedded or aws", b)
	return ""
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartFloe starts a gateway with its own storage; it is stopped when the test ends, and one that
// died during the test or did not exit 0 on SIGTERM fails it.
func StartFloe(t *testing.T, args ...string) *Floe {
	t.Helper()
	dir := t.TempDir()
	f := &Floe{t: t, Port: freePort(t), dir: dir, dataDir: filepath.Join(dir, "data"), args: args,
		log: filepath.Join(dir, "floe.log")}
	if backend(t) == "aws" {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		f.awsName = "floe-go-" + hex.EncodeToString(b)
		init := exec.Command(binary(), append([]string{"init"}, f.backendArgs()...)...)
		init.Env = f.env()
		if out, err := init.CombinedOutput(); err != nil {
			t.Fatalf("floe init: %v\n%s", err, out)
		}
	}
	f.Start()
	t.Cleanup(f.close)
	return f
}

func (f *Floe) Bootstrap() string { return fmt.Sprintf("127.0.0.1:%d", f.Port) }

func (f *Floe) backendArgs() []string {
	if f.awsName == "" {
		return nil
	}
	return []string{"--backend", "aws", "--bucket", f.awsName, "--table", f.awsName,
		"--endpoint-url", os.Getenv("FLOE_TEST_MOTO_ENDPOINT"), "--region", "us-east-1"}
}

func (f *Floe) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FLOE_") { // they would override the flags
			env = append(env, kv)
		}
	}
	for _, kv := range []string{"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_REGION=us-east-1"} {
		if os.Getenv(strings.SplitN(kv, "=", 2)[0]) == "" {
			env = append(env, kv)
		}
	}
	return env
}

// Start starts (or restarts) the process on the same port and storage.
func (f *Floe) Start() {
	f.t.Helper()
	args := []string{"--listen", f.Bootstrap(), "--advertised-listener", f.Bootstrap(),
		"--data-dir", f.dataDir, "--flush-interval", "5ms", "--log-level", "info"}
	args = append(append(args, f.backendArgs()...), f.args...)
	logFile, err := os.OpenFile(f.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		f.t.Fatal(err)
	}
	cmd := exec.Command(binary(), args...)
	cmd.Env = f.env()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		f.t.Fatalf("cannot start %s (build it or set FLOE_BIN): %v", binary(), err)
	}
	f.cmd, f.killed = cmd, false
	exited := make(chan struct{})
	f.exited = exited
	go func() { _ = cmd.Wait(); logFile.Close(); close(exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			f.t.Fatalf("floe exited while starting:\n%s", f.LogTail(40))
		default:
		}
		if c, err := net.DialTimeout("tcp", f.Bootstrap(), 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	f.t.Fatalf("floe did not listen within 30s:\n%s", f.LogTail(40))
}

// Stop sends SIGTERM and waits; it fails the test unless the gateway exits 0.
func (f *Floe) Stop() {
	f.t.Helper()
	_ = f.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-f.exited:
	case <-time.After(20 * time.Second):
		_ = f.cmd.Process.Kill()
		<-f.exited
		f.t.Fatalf("floe still running 20s after SIGTERM:\n%s", f.LogTail(40))
	}
	if code := f.cmd.ProcessState.ExitCode(); code != 0 {
		f.t.Fatalf("floe exited %d on SIGTERM:\n%s", code, f.LogTail(40))
	}
}

// Kill9 kills the process without letting it drain.
func (f *Floe) Kill9() {
	_ = f.cmd.Process.Kill()
	<-f.exited
	f.killed = true
}

func (f *Floe) close() {
	if f.killed {
		return
	}
	select {
	case <-f.exited:
		f.t.Errorf("floe died during the test (%v):\n%s", f.cmd.ProcessState, f.LogTail(60))
		return
	default:
	}
	f.Stop()
	if f.t.Failed() {
		f.t.Logf("floe log tail (%s):\n%s", f.log, f.LogTail(40))
	}
}

func (f *Floe) LogTail(n int) string {
	b, err := os.ReadFile(f.log)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

var topicSeq atomic.Int64

func uniqueTopic(name string) string {
	return fmt.Sprintf("%s-%d-%d", name, os.Getpid(), topicSeq.Add(1))
}

// sent is what a test produced, to compare with what it reads back.
type sent struct {
	key, value []byte
	headers    map[string]string
	partition  int32
	offset     int64
}

// read is one consumed record.
type read struct {
	key, value []byte
	headers    map[string]string
	partition  int32
	offset     int64
}

// checkReadBack asserts that every partition's records have offsets 0..n-1 and that each sent
// record is at its acknowledged partition and offset, byte-exact, and nothing else is there.
func checkReadBack(t *testing.T, what string, s []sent, r []read) {
	t.Helper()
	byPart := map[int32][]read{}
	for _, x := range r {
		byPart[x.partition] = append(byPart[x.partition], x)
	}
	for p, rs := range byPart {
		for i, x := range rs {
			if x.offset != int64(i) {
				t.Fatalf("%s: partition %d: offset %d at position %d (not contiguous from 0)", what, p, x.offset, i)
			}
		}
	}
	if len(r) != len(s) {
		t.Fatalf("%s: read %d records, sent %d", what, len(r), len(s))
	}
	for _, x := range s {
		rs := byPart[x.partition]
		if x.offset >= int64(len(rs)) {
			t.Fatalf("%s: acknowledged %d@%d not read back", what, x.partition, x.offset)
		}
		got := rs[x.offset]
		if !bytes.Equal(got.key, x.key) || !bytes.Equal(got.value, x.value) {
			t.Fatalf("%s: at %d@%d read key %q value %q, sent key %q value %q", what, x.partition, x.offset,
				got.key, trunc(got.value), x.key, trunc(x.value))
		}
		for k, v := range x.headers {
			if got.headers[k] != v {
				t.Fatalf("%s: at %d@%d header %q = %q, sent %q", what, x.partition, x.offset, k, got.headers[k], v)
			}
		}
	}
}

// sortReads orders records by partition, then offset.
func sortReads(out []read) {
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].partition != out[j].partition {
			return out[i].partition < out[j].partition
		}
		return out[i].offset < out[j].offset
	})
}

func trunc(b []byte) []byte {
	if len(b) > 24 {
		return b[:24]
	}
	return b
}

// values makes n keyed values: compressible text and pseudo-random bytes.
func values(n int, tag string) (keys, vals [][]byte) {
	for i := 0; i < n; i++ {
		keys = append(keys, []byte(fmt.Sprintf("key-%d", i%41)))
		v := []byte(strings.Repeat(fmt.Sprintf("%s %d ", tag, i), 1+i%30))
		if i%4 == 0 {
			v = make([]byte, 100+i%700)
			for j := range v {
				v[j] = byte((i*31 + j*17) ^ j>>3)
			}
		}
		vals = append(vals, v)
	}
	return keys, vals
}
