package floetests

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// franz-go (github.com/twmb/franz-go): an independent pure-Go implementation. Its producer is
// idempotent by default and its group consumer uses the cooperative-sticky balancer.

func franzClient(t *testing.T, f *Floe, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	base := []kgo.Opt{kgo.SeedBrokers(f.Bootstrap()), kgo.ClientID("floe-go-franz")}
	if os.Getenv("FLOE_TEST_CLIENT_LOG") != "" {
		base = append(base, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelDebug, nil)))
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func franzCreate(t *testing.T, adm *kadm.Client, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopics(ctx, partitions, 1, configs, topic)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp[topic].Err; err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
}

func franzProduce(t *testing.T, cl *kgo.Client, topic string, n int, tag string) []sent {
	t.Helper()
	keys, vals := values(n, tag)
	var recs []*kgo.Record
	for i := range keys {
		recs = append(recs, &kgo.Record{Topic: topic, Key: keys[i], Value: vals[i],
			Headers: []kgo.RecordHeader{{Key: "i", Value: []byte(fmt.Sprint(i))}, {Key: "tag", Value: []byte(tag)}}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := cl.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	var out []sent
	for _, r := range res {
		out = append(out, sent{key: r.Record.Key, value: r.Record.Value, partition: r.Record.Partition,
			offset: r.Record.Offset, headers: map[string]string{"i": string(r.Record.Headers[0].Value), "tag": tag}})
	}
	return out
}

// franzReadAll reads every partition from the start to the end offsets taken first.
func franzReadAll(t *testing.T, f *Floe, topic string) []read {
	t.Helper()
	adm := kadm.NewClient(franzClient(t, f))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil || ends.Error() != nil {
		t.Fatalf("end offsets: %v %v", err, ends.Error())
	}
	want := map[int32]int64{}
	from := map[int32]kgo.Offset{}
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) {
		want[o.Partition] = o.Offset
		from[o.Partition] = kgo.NewOffset().AtStart()
		total += o.Offset
	})
	cl := franzClient(t, f, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))
	var out []read
	for int64(len(out)) < total {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records", len(out), total)
		}
		fetches.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", tp, p, err) })
		fetches.EachRecord(func(r *kgo.Record) {
			h := map[string]string{}
			for _, x := range r.Headers {
				h[x.Key] = string(x.Value)
			}
			out = append(out, read{key: r.Key, value: r.Value, headers: h, partition: r.Partition, offset: r.Offset})
		})
	}
	sortReads(out)
	return out
}

func TestFranzProducesEveryCodecByteExact(t *testing.T) {
	f := StartFloe(t)
	adm := kadm.NewClient(franzClient(t, f))
	for name, codec := range map[string]kgo.CompressionCodec{"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(),
		"snappy": kgo.SnappyCompression(), "lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression()} {
		t.Run(name, func(t *testing.T) {
			topic := uniqueTopic("franz-" + name)
			franzCreate(t, adm, topic, 3, nil)
			cl := franzClient(t, f, kgo.ProducerBatchCompression(codec), kgo.ProducerLinger(5*time.Millisecond))
			s := franzProduce(t, cl, topic, 500, name)
			checkReadBack(t, "franz-go "+name, s, franzReadAll(t, f, topic))
		})
	}
}

func TestFranzIdempotentProducerThroughAGatewayRestart(t *testing.T) {
	f := StartFloe(t)
	topic := uniqueTopic("franz-restart")
	franzCreate(t, kadm.NewClient(franzClient(t, f)), topic, 4, nil)
	cl := franzClient(t, f, kgo.RecordDeliveryTimeout(60*time.Second))
	s := franzProduce(t, cl, topic, 300, "before")
	f.Stop()
	done := make(chan []sent)
	go func() {
		time.Sleep(500 * time.Millisecond)
		f.Start()
		done <- nil
	}()
	// produced while the gateway is down: retried until it is back
	s = append(s, franzProduce(t, cl, topic, 300, "across")...)
	<-done
	checkReadBack(t, "franz-go across a restart", s, franzReadAll(t, f, topic))
}

func TestFranzGroupSharesPartitionsAndResumesFromCommits(t *testing.T) {
	f := StartFloe(t, "--group-initial-rebalance-delay", "200ms")
	topic := uniqueTopic("franz-group")
	group := uniqueTopic("franz-group")
	franzCreate(t, kadm.NewClient(franzClient(t, f)), topic, 6, nil)
	franzProduce(t, franzClient(t, f), topic, 600, "g")

	var mu sync.Mutex
	owns := map[string]map[int32]bool{"a": {}, "b": {}, "c": {}}
	member := func(name string) *kgo.Client {
		return franzClient(t, f, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				mu.Lock()
				defer mu.Unlock()
				for _, p := range m[topic] {
					owns[name][p] = true
				}
			}),
			kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
				_ = cl.CommitUncommittedOffsets(ctx)
				mu.Lock()
				defer mu.Unlock()
				for _, p := range m[topic] {
					delete(owns[name], p)
				}
			}))
	}
	a, b := member("a"), member("b")
	seen := map[string]int{}
	shared := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(owns["a"]) > 0 && len(owns["b"]) > 0 && len(owns["a"])+len(owns["b"]) == 6
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for len(seen) < 600 || !shared() {
		for _, cl := range []*kgo.Client{a, b} {
			pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
			fetches := cl.PollFetches(pctx)
			pcancel()
			if ctx.Err() != nil {
				t.Fatalf("read %d of 600; assignments %v", len(seen), owns)
			}
			fetches.EachRecord(func(r *kgo.Record) { seen[fmt.Sprintf("%d@%d", r.Partition, r.Offset)]++ })
			if err := cl.CommitUncommittedOffsets(ctx); err != nil {
				t.Logf("commit: %v (retried on the next poll)", err)
			}
		}
	}
	a.Close()
	b.Close()
	franzProduce(t, franzClient(t, f), topic, 60, "after")
	c := member("c")
	n := 0
	for n < 60 {
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fetches := c.PollFetches(pctx)
		pcancel()
		if ctx.Err() != nil {
			t.Fatalf("a new member read %d of the 60 records produced after the commits", n)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if string(r.Headers[1].Value) != "after" {
				t.Fatalf("a new member re-read %d@%d, committed before it joined", r.Partition, r.Offset)
			}
			n++
		})
	}
}
