package floetests

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// IBM sarama (github.com/IBM/sarama): an independent pure-Go implementation. It picks request
// versions from Config.Version rather than from ApiVersions, so the suite runs with the version a
// current application sets.

func saramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V3_6_0_0
	c.ClientID = "floe-go-sarama"
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Idempotent = true
	c.Producer.Retry.Max = 50
	c.Producer.Retry.Backoff = 100 * time.Millisecond
	c.Net.MaxOpenRequests = 1 // the idempotent producer requires it
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Metadata.Retry.Backoff = 100 * time.Millisecond
	return c
}

func saramaAdmin(t *testing.T, f *Floe) sarama.ClusterAdmin {
	t.Helper()
	adm, err := sarama.NewClusterAdmin([]string{f.Bootstrap()}, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = adm.Close() })
	return adm
}

func saramaProduce(t *testing.T, f *Floe, topic string, n int, tag string, codec sarama.CompressionCodec) []sent {
	t.Helper()
	c := saramaConfig()
	c.Producer.Compression = codec
	p, err := sarama.NewSyncProducer([]string{f.Bootstrap()}, c)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	keys, vals := values(n, tag)
	var msgs []*sarama.ProducerMessage
	for i := range keys {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.ByteEncoder(keys[i]),
			Value: sarama.ByteEncoder(vals[i]), Headers: []sarama.RecordHeader{
				{Key: []byte("i"), Value: []byte(fmt.Sprint(i))}, {Key: []byte("tag"), Value: []byte(tag)}}})
	}
	if err := p.SendMessages(msgs); err != nil {
		t.Fatalf("send: %v", err)
	}
	var out []sent
	for i, m := range msgs {
		out = append(out, sent{key: keys[i], value: vals[i], partition: m.Partition, offset: m.Offset,
			headers: map[string]string{"i": fmt.Sprint(i), "tag": tag}})
	}
	return out
}

func toRead(m *sarama.ConsumerMessage) read {
	h := map[string]string{}
	for _, x := range m.Headers {
		h[string(x.Key)] = string(x.Value)
	}
	return read{key: m.Key, value: m.Value, headers: h, partition: m.Partition, offset: m.Offset}
}

// saramaReadAll reads every partition from the oldest offset to the newest taken first.
func saramaReadAll(t *testing.T, f *Floe, topic string) []read {
	t.Helper()
	client, err := sarama.NewClient([]string{f.Bootstrap()}, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var out []read
	for _, p := range parts {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		if end == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		timeout := time.After(30 * time.Second)
		for done := false; !done; {
			select {
			case m := <-pc.Messages():
				out = append(out, toRead(m))
				done = m.Offset+1 >= end
			case e := <-pc.Errors():
				t.Fatalf("consume %s/%d: %v", topic, p, e)
			case <-timeout:
				t.Fatalf("partition %d: read up to %d of %d", p, len(out), end)
			}
		}
		pc.Close()
	}
	sortReads(out)
	return out
}

func TestSaramaIdempotentProducerEveryCodecByteExact(t *testing.T) {
	f := StartFloe(t)
	adm := saramaAdmin(t, f)
	for name, codec := range map[string]sarama.CompressionCodec{"none": sarama.CompressionNone,
		"gzip": sarama.CompressionGZIP, "snappy": sarama.CompressionSnappy, "lz4": sarama.CompressionLZ4,
		"zstd": sarama.CompressionZSTD} {
		t.Run(name, func(t *testing.T) {
			topic := uniqueTopic("sarama-" + name)
			if err := adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false); err != nil {
				t.Fatal(err)
			}
			s := saramaProduce(t, f, topic, 400, name, codec)
			checkReadBack(t, "sarama "+name, s, saramaReadAll(t, f, topic))
		})
	}
}

// groupHandler records what its member consumed and marks each message for the autocommit.
type groupHandler struct {
	mu     sync.Mutex
	seen   map[string]int
	claims map[int32]bool
	tag    map[string]string
}

func (h *groupHandler) Setup(s sarama.ConsumerGroupSession) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.claims = map[int32]bool{}
	for _, p := range s.Claims() {
		for _, q := range p {
			h.claims[q] = true
		}
	}
	return nil
}

func (h *groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *groupHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		h.mu.Lock()
		h.seen[fmt.Sprintf("%d@%d", m.Partition, m.Offset)]++
		for _, x := range m.Headers {
			if string(x.Key) == "tag" {
				h.tag[fmt.Sprintf("%d@%d", m.Partition, m.Offset)] = string(x.Value)
			}
		}
		h.mu.Unlock()
		s.MarkMessage(m, "")
	}
	return nil
}

func (h *groupHandler) snapshot() (int, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.seen), len(h.claims)
}

// runMember consumes as a member of group until ctx ends.
func runMember(t *testing.T, f *Floe, group, topic string, strategy sarama.BalanceStrategy, h *groupHandler) (func(), <-chan error) {
	t.Helper()
	c := saramaConfig()
	c.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{strategy}
	c.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond
	g, err := sarama.NewConsumerGroup([]string{f.Bootstrap()}, group, c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	go func() {
		var last error
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, h); err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
				last = err
				time.Sleep(100 * time.Millisecond)
			}
		}
		errs <- errors.Join(last, g.Close())
	}()
	return cancel, errs
}

func TestSaramaConsumerGroupsShareAndResume(t *testing.T) {
	f := StartFloe(t, "--group-initial-rebalance-delay", "200ms")
	adm := saramaAdmin(t, f)
	for name, strategy := range map[string]sarama.BalanceStrategy{"range": sarama.NewBalanceStrategyRange(),
		"roundrobin": sarama.NewBalanceStrategyRoundRobin(), "sticky": sarama.NewBalanceStrategySticky()} {
		t.Run(name, func(t *testing.T) {
			topic := uniqueTopic("sarama-group-" + name)
			group := uniqueTopic("sarama-group-" + name)
			if err := adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 6, ReplicationFactor: 1}, false); err != nil {
				t.Fatal(err)
			}
			saramaProduce(t, f, topic, 600, "g", sarama.CompressionNone)
			ha := &groupHandler{seen: map[string]int{}, tag: map[string]string{}}
			hb := &groupHandler{seen: map[string]int{}, tag: map[string]string{}}
			stopA, errA := runMember(t, f, group, topic, strategy, ha)
			stopB, errB := runMember(t, f, group, topic, strategy, hb)
			deadline := time.Now().Add(60 * time.Second)
			for {
				na, ca := ha.snapshot()
				nb, cb := hb.snapshot()
				if ca > 0 && cb > 0 && ca+cb == 6 && na+nb >= 600 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("read %d+%d of 600, claims %d+%d", na, nb, ca, cb)
				}
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(500 * time.Millisecond) // an autocommit after the last mark
			stopA()
			stopB()
			for _, e := range []<-chan error{errA, errB} {
				if err := <-e; err != nil {
					t.Fatalf("member: %v", err)
				}
			}
			offsets, err := adm.ListConsumerGroupOffsets(group, nil)
			if err != nil {
				t.Fatal(err)
			}
			total := int64(0)
			for _, ps := range offsets.Blocks {
				for _, b := range ps {
					total += b.Offset
				}
			}
			if total != 600 {
				t.Fatalf("committed offsets add up to %d, want 600", total)
			}
			saramaProduce(t, f, topic, 60, "after", sarama.CompressionNone)
			hc := &groupHandler{seen: map[string]int{}, tag: map[string]string{}}
			stopC, errC := runMember(t, f, group, topic, strategy, hc)
			deadline = time.Now().Add(30 * time.Second)
			for n, _ := hc.snapshot(); n < 60; n, _ = hc.snapshot() {
				if time.Now().After(deadline) {
					t.Fatalf("a new member read %d of the 60 records produced after the commits", n)
				}
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond)
			stopC()
			if err := <-errC; err != nil {
				t.Fatalf("member: %v", err)
			}
			hc.mu.Lock()
			defer hc.mu.Unlock()
			for at, tag := range hc.tag {
				if tag != "after" {
					t.Fatalf("a new member re-read %s, committed before it joined", at)
				}
			}
		})
	}
}

func TestSaramaClusterAdmin(t *testing.T) {
	f := StartFloe(t, "--group-initial-rebalance-delay", "200ms")
	adm := saramaAdmin(t, f)
	topic := uniqueTopic("sarama-admin")
	retention := "3600000"
	if err := adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"retention.ms": &retention}}, false); err != nil {
		t.Fatal(err)
	}
	err := adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false)
	if !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		t.Fatalf("creating it again: %v, want TOPIC_ALREADY_EXISTS", err)
	}
	topics, err := adm.ListTopics()
	if err != nil || topics[topic].NumPartitions != 2 {
		t.Fatalf("list: %v %+v", err, topics[topic])
	}
	if err := adm.CreatePartitions(topic, 4, nil, false); err != nil {
		t.Fatal(err)
	}
	md, err := adm.DescribeTopics([]string{topic})
	if err != nil || len(md) != 1 || len(md[0].Partitions) != 4 {
		t.Fatalf("describe: %v %+v", err, md)
	}
	entries, err := adm.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range entries {
		if e.Name == "retention.ms" {
			found = e.Value == "3600000" && e.Source == sarama.SourceTopic
		}
	}
	if !found {
		t.Fatalf("retention.ms not described as the topic's 3600000: %+v", entries)
	}
	limit := "200000"
	if err := adm.IncrementalAlterConfig(sarama.TopicResource, topic, map[string]sarama.IncrementalAlterConfigsEntry{
		"max.message.bytes": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &limit}}, false); err != nil {
		t.Fatal(err)
	}
	entries, _ = adm.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic,
		ConfigNames: []string{"max.message.bytes"}})
	if len(entries) != 1 || entries[0].Value != "200000" {
		t.Fatalf("max.message.bytes after the change: %+v", entries)
	}

	s := saramaProduce(t, f, topic, 40, "admin", sarama.CompressionNone)
	// DeleteRecords on the partition holding the most records
	counts := map[int32]int{}
	for _, x := range s {
		counts[x.partition]++
	}
	var busiest int32
	for p, n := range counts {
		if n > counts[busiest] {
			busiest = p
		}
	}
	if err := adm.DeleteRecords(topic, map[int32]int64{busiest: 2}); err != nil {
		t.Fatal(err)
	}
	client, err := sarama.NewClient([]string{f.Bootstrap()}, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if start, err := client.GetOffset(topic, busiest, sarama.OffsetOldest); err != nil || start != 2 {
		t.Fatalf("log start after DeleteRecords: %d %v, want 2", start, err)
	}

	group := uniqueTopic("sarama-admin-group")
	h := &groupHandler{seen: map[string]int{}, tag: map[string]string{}}
	stop, errs := runMember(t, f, group, topic, sarama.NewBalanceStrategyRange(), h)
	deadline := time.Now().Add(30 * time.Second)
	for n, _ := h.snapshot(); n < len(s)-2; n, _ = h.snapshot() {
		if time.Now().After(deadline) {
			t.Fatalf("group read %d of %d", n, len(s)-2)
		}
		time.Sleep(100 * time.Millisecond)
	}
	groups, err := adm.ListConsumerGroups()
	if err != nil || groups[group] != "consumer" {
		t.Fatalf("list groups: %v %v", err, groups)
	}
	desc, err := adm.DescribeConsumerGroups([]string{group})
	if err != nil || len(desc) != 1 || desc[0].State != "Stable" || len(desc[0].Members) != 1 {
		t.Fatalf("describe group: %v %+v", err, desc)
	}
	time.Sleep(300 * time.Millisecond)
	stop()
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if err := adm.DeleteConsumerGroup(group); err != nil {
		t.Fatal(err)
	}
	if err := adm.DeleteTopic(topic); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		topics, err := adm.ListTopics()
		if err == nil {
			if _, ok := topics[topic]; !ok {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the deleted topic is still listed")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
