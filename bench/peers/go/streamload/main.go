// Command streamload is a gRPC load client for streaming (and unary) methods: it opens C
// connections with S calls in flight on each, runs them for a fixed time after a warm-up,
// and prints one JSON line: messages/s and latency percentiles.
//
//	streamload --target 127.0.0.1:50051 --mode bidi   -c 4 -s 8 --window 1 --size 100 --duration 5
//	streamload --target 127.0.0.1:50051 --mode stream -c 4 -s 8 --count 100 --size 100
//	streamload --target 127.0.0.1:50051 --mode unary  -c 16 -s 16
//
// Modes (the methods every benchmark peer serves):
//   - stream: streambench.StreamBench/ServerStream{count, size}; latency = one whole call.
//   - bidi:   streambench.StreamBench/BidiEcho, one long call per slot, `window` chunks of
//     `size` bytes in flight; latency = one chunk's round trip.
//   - unary:  helloworld.Greeter/SayHello{name}; latency = one call (cross-checks h2load).
//
// Messages go through a pass-through codec: requests are encoded once with the generated
// types and sent as bytes, replies are checked (echo: the same bytes; stream: the size of
// the chunk asked for; unary: each slot's first reply decoded) but not decoded again, so the
// client spends its CPU on HTTP/2 and leaves the server as the bottleneck. It works against
// any gRPC server of these methods (GMF, grpc-go, grpcio). A call that fails stops its slot;
// the JSON counts the errors and quotes the first. Exit status 1 when a connection could not
// be made, any call failed, or nothing was received.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"gmfpeers/pb/helloworld"
	"gmfpeers/pb/streambench"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

const (
	serverStreamMethod = "/streambench.StreamBench/ServerStream"
	bidiEchoMethod     = "/streambench.StreamBench/BidiEcho"
	sayHelloMethod     = "/helloworld.Greeter/SayHello"
)

type options struct {
	target         string
	mode           string
	connections    int
	streams        int
	window         int
	size           int
	count          int
	name           string
	warmup         time.Duration
	duration       time.Duration
	connectTimeout time.Duration
}

// rawCodec passes encoded messages through: Marshal sends a *frame's bytes, Unmarshal keeps
// the received bytes (grpc-go gives each message its own buffer). Its empty name keeps the
// content-type plain "application/grpc".
type rawCodec struct{}

type frame struct{ b []byte }

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return v.(*frame).b, nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	v.(*frame).b = data
	return nil
}
func (rawCodec) Name() string { return "" }

var passThrough = grpc.ForceCodec(rawCodec{})

// Phases: calls run from the start, count only while measuring, and stop after.
const (
	warmingUp int32 = iota
	measuring
	stopping
)

// slot is one call-issuing goroutine's view: its counters and latencies, merged at the end.
type slot struct {
	phase    *int32
	messages int64
	calls    int64
	bytes    int64
	err      error
	hist     histogram
}

func (s *slot) measuring() bool { return atomic.LoadInt32(s.phase) == measuring }
func (s *slot) stopping() bool  { return atomic.LoadInt32(s.phase) == stopping }

// fail records the error that ends this slot, unless it is the stop's own cancellation.
func (s *slot) fail(err error) {
	if !s.stopping() {
		s.err = err
	}
}

func runUnary(ctx context.Context, conn *grpc.ClientConn, o *options, s *slot) {
	request, _ := proto.Marshal(&helloworld.HelloRequest{Name: o.name})
	want := "Hello " + o.name + "!"
	checked := false
	for !s.stopping() {
		start := time.Now()
		var reply frame
		if err := conn.Invoke(ctx, sayHelloMethod, &frame{request}, &reply, passThrough); err != nil {
			s.fail(err)
			return
		}
		if !checked {
			var message helloworld.HelloReply
			if err := proto.Unmarshal(reply.b, &message); err != nil || message.Message != want {
				s.fail(fmt.Errorf("SayHello answered %q (%v), want %q", message.Message, err, want))
				return
			}
			checked = true
		}
		if s.measuring() {
			s.hist.record(time.Since(start))
			s.calls++
			s.messages++
			s.bytes += int64(len(reply.b))
		}
	}
}

func runServerStream(ctx context.Context, conn *grpc.ClientConn, o *options, s *slot) {
	request, _ := proto.Marshal(&streambench.StreamRequest{Count: int32(o.count), Size: int32(o.size)})
	chunkSize := proto.Size(&streambench.Chunk{Body: make([]byte, o.size)})
	desc := &grpc.StreamDesc{ServerStreams: true}
	for !s.stopping() {
		start := time.Now()
		stream, err := conn.NewStream(ctx, desc, serverStreamMethod, passThrough)
		if err == nil {
			err = stream.SendMsg(&frame{request})
		}
		if err == nil {
			err = stream.CloseSend()
		}
		received := 0
		for err == nil {
			var chunk frame
			if err = stream.RecvMsg(&chunk); err != nil {
				break
			}
			if len(chunk.b) != chunkSize {
				err = fmt.Errorf("ServerStream sent a %d-byte message, want %d", len(chunk.b), chunkSize)
				break
			}
			received++
			if s.measuring() {
				s.messages++
				s.bytes += int64(chunkSize)
			}
		}
		if err != io.EOF {
			s.fail(err)
			return
		}
		if received != o.count {
			s.fail(fmt.Errorf("ServerStream sent %d messages, want %d", received, o.count))
			return
		}
		if s.measuring() {
			s.hist.record(time.Since(start))
			s.calls++
		}
	}
}

func runBidiEcho(ctx context.Context, conn *grpc.ClientConn, o *options, s *slot) {
	body := make([]byte, o.size)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	payload, _ := proto.Marshal(&streambench.Chunk{Body: body})
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, bidiEchoMethod, passThrough)
	if err != nil {
		s.fail(err)
		return
	}
	s.calls = 1 // one call per slot for the whole run
	// The sender keeps `window` chunks in flight: the channel holds their send times, in
	// order, and the echo comes back in the same order.
	sent := make(chan time.Time, o.window)
	sendErr := make(chan error, 1)
	go func() {
		out := &frame{payload}
		for {
			select {
			case sent <- time.Now():
			case <-ctx.Done():
				sendErr <- nil
				return
			}
			if err := stream.SendMsg(out); err != nil {
				sendErr <- err
				return
			}
		}
	}()
	for {
		var echo frame
		if err := stream.RecvMsg(&echo); err != nil {
			if err == io.EOF {
				err = fmt.Errorf("BidiEcho ended the call before the client did")
			}
			s.fail(err)
			break
		}
		start := <-sent
		if !bytes.Equal(echo.b, payload) {
			s.fail(fmt.Errorf("BidiEcho sent back %d bytes that differ from the %d sent", len(echo.b), len(payload)))
			break
		}
		if s.measuring() {
			s.hist.record(time.Since(start))
			s.messages++
			s.bytes += int64(len(payload))
		}
	}
	if s.err == nil && !s.stopping() {
		s.err = <-sendErr
	}
}

type latency struct {
	Min  float64 `json:"min"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

type report struct {
	Tool         string   `json:"tool"`
	Mode         string   `json:"mode"`
	Target       string   `json:"target"`
	Connections  int      `json:"connections"`
	Streams      int      `json:"streams"`
	Window       int      `json:"window,omitempty"`
	Size         *int     `json:"size,omitempty"`
	Name         string   `json:"name,omitempty"`
	Count        int      `json:"count,omitempty"`
	GOMAXPROCS   int      `json:"gomaxprocs"`
	DurationS    float64  `json:"duration_s"`
	Messages     int64    `json:"messages"`
	Calls        int64    `json:"calls"`
	MessagesPerS float64  `json:"messages_per_s"`
	CallsPerS    float64  `json:"calls_per_s,omitempty"` // not for bidi: its calls last the whole run
	MBPerS       float64  `json:"mb_per_s"`
	LatencyOf    string   `json:"latency_of"`
	LatencyUs    *latency `json:"latency_us"`
	Errors       int      `json:"errors"`
	FirstError   string   `json:"first_error,omitempty"`
}

func us(ns int64) float64 { return round(float64(ns)/1e3, 1) }

func round(x float64, digits int) float64 {
	scale := math.Pow(10, float64(digits))
	return math.Round(x*scale) / scale
}

func emit(r *report) {
	line, _ := json.Marshal(r)
	fmt.Println(string(line))
}

func main() {
	o := &options{}
	var warmup, duration, connectTimeout float64
	flag.StringVar(&o.target, "target", "127.0.0.1:50051", "server HOST:PORT")
	flag.StringVar(&o.mode, "mode", "bidi", "stream (ServerStream), bidi (BidiEcho) or unary (SayHello)")
	flag.IntVar(&o.connections, "c", 1, "connections")
	flag.IntVar(&o.streams, "s", 1, "calls in flight per connection")
	flag.IntVar(&o.window, "window", 1, "bidi: chunks in flight per call")
	flag.IntVar(&o.size, "size", 100, "stream, bidi: chunk body bytes")
	flag.IntVar(&o.count, "count", 100, "stream: chunks per call")
	flag.StringVar(&o.name, "name", "world", "unary: HelloRequest.name")
	flag.Float64Var(&warmup, "warmup", 0.5, "seconds of load before measuring")
	flag.Float64Var(&duration, "duration", 5, "seconds measured")
	flag.Float64Var(&connectTimeout, "connect-timeout", 10, "seconds to connect")
	flag.Parse()
	o.warmup = time.Duration(warmup * float64(time.Second))
	o.duration = time.Duration(duration * float64(time.Second))
	o.connectTimeout = time.Duration(connectTimeout * float64(time.Second))

	r := &report{
		Tool: "streamload", Mode: o.mode, Target: o.target, Connections: o.connections, Streams: o.streams,
		GOMAXPROCS: runtime.GOMAXPROCS(0),
	}
	run := map[string]func(context.Context, *grpc.ClientConn, *options, *slot){
		"unary": runUnary, "stream": runServerStream, "bidi": runBidiEcho,
	}[o.mode]
	switch {
	case run == nil:
		r.FirstError = fmt.Sprintf("unknown --mode %q (stream, bidi or unary)", o.mode)
	case o.connections < 1 || o.streams < 1 || o.window < 1 || o.size < 0 || o.count < 0 || o.duration <= 0:
		r.FirstError = "-c, -s and --window must be >= 1, --size and --count >= 0, --duration > 0"
	}
	switch o.mode {
	case "unary":
		r.LatencyOf, r.Name = "call", o.name
	case "stream":
		r.LatencyOf, r.Size, r.Count = "call", &o.size, o.count
	case "bidi":
		r.LatencyOf, r.Size, r.Window = "message", &o.size, o.window
	}
	if r.FirstError != "" {
		r.Errors = 1
		emit(r)
		os.Exit(2)
	}

	conns := make([]*grpc.ClientConn, o.connections)
	for i := range conns {
		dialCtx, cancel := context.WithTimeout(context.Background(), o.connectTimeout)
		conn, err := grpc.DialContext(dialCtx, o.target, grpc.WithInsecure(), grpc.WithBlock())
		cancel()
		if err != nil {
			r.Errors, r.FirstError = 1, fmt.Sprintf("connection %d to %s: %v", i, o.target, err)
			emit(r)
			os.Exit(1)
		}
		defer conn.Close()
		conns[i] = conn
	}

	var phase int32
	ctx, cancel := context.WithCancel(context.Background())
	slots := make([]*slot, 0, o.connections*o.streams)
	var wg sync.WaitGroup
	for _, conn := range conns {
		for j := 0; j < o.streams; j++ {
			s := &slot{phase: &phase}
			slots = append(slots, s)
			wg.Add(1)
			go func(conn *grpc.ClientConn) {
				defer wg.Done()
				run(ctx, conn, o, s)
			}(conn)
		}
	}
	time.Sleep(o.warmup)
	atomic.StoreInt32(&phase, measuring)
	start := time.Now()
	time.Sleep(o.duration)
	atomic.StoreInt32(&phase, stopping)
	elapsed := time.Since(start)
	cancel()
	wg.Wait()

	var total histogram
	for _, s := range slots {
		r.Messages += s.messages
		r.Calls += s.calls
		total.merge(&s.hist)
		if s.err != nil {
			if r.Errors == 0 {
				r.FirstError = s.err.Error()
			}
			r.Errors++
		}
		r.MBPerS += float64(s.bytes)
	}
	seconds := elapsed.Seconds()
	r.DurationS = round(seconds, 4)
	r.MessagesPerS = round(float64(r.Messages)/seconds, 1)
	if o.mode != "bidi" {
		r.CallsPerS = round(float64(r.Calls)/seconds, 1)
	}
	r.MBPerS = round(r.MBPerS/seconds/1e6, 3)
	if total.n > 0 {
		r.LatencyUs = &latency{
			Min: us(total.min), P50: us(total.quantile(0.5)), P90: us(total.quantile(0.9)),
			P99: us(total.quantile(0.99)), P999: us(total.quantile(0.999)), Max: us(total.max),
			Mean: us(total.sum / total.n),
		}
	}
	emit(r)
	if r.Errors > 0 || r.Messages == 0 {
		os.Exit(1)
	}
}
