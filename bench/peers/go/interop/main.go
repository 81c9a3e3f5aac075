// Command interop runs gRPC's interop test cases (doc/interop-test-descriptions.md in
// grpc/grpc) on grpc-go's client against any server of grpc.testing.TestService:
//
//	interop --server_port 50051 [--server_host 127.0.0.1] [--test_case empty_unary,large_unary|all]
//
// It prints "ok CASE" or "FAIL CASE: why" per case and exits 1 when one failed, 2 for bad
// options. Like the grpcio cases (tests/peers/interop_cases.py), client_compressed_streaming
// compresses per call (grpc-go's client has no per-message compression switch), so its
// compressed and uncompressed messages go in two calls.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"gmfpeers/pb/interop"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // registers the "gzip" compressor
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const (
	specialMessage = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
	echoInitial    = "x-grpc-test-echo-initial"
	echoTrailing   = "x-grpc-test-echo-trailing-bin"
	callTimeout    = 20 * time.Second
)

type testCase func(ctx context.Context, conn *grpc.ClientConn) error

func zeros(n int) *interop.Payload { return &interop.Payload{Body: make([]byte, n)} }

func expectCode(err error, want codes.Code, message *string) error {
	if err == nil {
		return fmt.Errorf("the call succeeded; expected %v", want)
	}
	st, _ := status.FromError(err)
	if st.Code() != want {
		return fmt.Errorf("status %v (%q); expected %v", st.Code(), st.Message(), want)
	}
	if message != nil && st.Message() != *message {
		return fmt.Errorf("message %q; expected %q", st.Message(), *message)
	}
	return nil
}

func checkSize(what string, got, want int) error {
	if got != want {
		return fmt.Errorf("%s: %d bytes; expected %d", what, got, want)
	}
	return nil
}

func emptyUnary(ctx context.Context, conn *grpc.ClientConn) error {
	reply, err := interop.NewTestServiceClient(conn).EmptyCall(ctx, &interop.Empty{})
	if err != nil {
		return err
	}
	if reply == nil {
		return errors.New("nil response")
	}
	return nil
}

func largeUnary(ctx context.Context, conn *grpc.ClientConn) error {
	reply, err := interop.NewTestServiceClient(conn).UnaryCall(ctx, &interop.SimpleRequest{ResponseSize: 314159, Payload: zeros(271828)})
	if err != nil {
		return err
	}
	if !bytes.Equal(reply.GetPayload().GetBody(), make([]byte, 314159)) {
		return checkSize("response payload of zeros", len(reply.GetPayload().GetBody()), 314159)
	}
	return nil
}

func compressedRequest(expect bool) *interop.SimpleRequest {
	return &interop.SimpleRequest{ExpectCompressed: &interop.BoolValue{Value: expect}, ResponseSize: 314159, Payload: zeros(271828)}
}

func clientCompressedUnary(ctx context.Context, conn *grpc.ClientConn) error {
	client := interop.NewTestServiceClient(conn)
	_, err := client.UnaryCall(ctx, compressedRequest(true)) // the feature probe, uncompressed
	if err := expectCode(err, codes.InvalidArgument, nil); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	reply, err := client.UnaryCall(ctx, compressedRequest(true), grpc.UseCompressor("gzip"))
	if err != nil {
		return fmt.Errorf("compressed: %w", err)
	}
	if err := checkSize("compressed call's response", len(reply.GetPayload().GetBody()), 314159); err != nil {
		return err
	}
	if reply, err = client.UnaryCall(ctx, compressedRequest(false)); err != nil {
		return fmt.Errorf("uncompressed: %w", err)
	}
	return checkSize("uncompressed call's response", len(reply.GetPayload().GetBody()), 314159)
}

func serverCompressedUnary(ctx context.Context, conn *grpc.ClientConn) error {
	for _, compressed := range []bool{true, false} {
		reply, err := interop.NewTestServiceClient(conn).UnaryCall(ctx, &interop.SimpleRequest{
			ResponseCompressed: &interop.BoolValue{Value: compressed}, ResponseSize: 314159, Payload: zeros(271828)})
		if err != nil {
			return err
		}
		if err := checkSize("response", len(reply.GetPayload().GetBody()), 314159); err != nil {
			return err
		}
	}
	return nil
}

func streamingInput(ctx context.Context, conn *grpc.ClientConn, requests []*interop.StreamingInputCallRequest, options ...grpc.CallOption) (int, error) {
	stream, err := interop.NewTestServiceClient(conn).StreamingInputCall(ctx, options...)
	if err != nil {
		return 0, err
	}
	for _, request := range requests {
		if err := stream.Send(request); err != nil {
			break // the status comes with CloseAndRecv
		}
	}
	reply, err := stream.CloseAndRecv()
	if err != nil {
		return 0, err
	}
	return int(reply.GetAggregatedPayloadSize()), nil
}

func clientStreaming(ctx context.Context, conn *grpc.ClientConn) error {
	var requests []*interop.StreamingInputCallRequest
	for _, n := range []int{27182, 8, 1828, 45904} {
		requests = append(requests, &interop.StreamingInputCallRequest{Payload: zeros(n)})
	}
	total, err := streamingInput(ctx, conn, requests)
	if err != nil {
		return err
	}
	return checkSize("aggregated_payload_size", total, 74922)
}

func clientCompressedStreaming(ctx context.Context, conn *grpc.ClientConn) error {
	request := func(expect bool, n int) []*interop.StreamingInputCallRequest {
		return []*interop.StreamingInputCallRequest{{ExpectCompressed: &interop.BoolValue{Value: expect}, Payload: zeros(n)}}
	}
	_, err := streamingInput(ctx, conn, request(true, 27182))
	if err := expectCode(err, codes.InvalidArgument, nil); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	first, err := streamingInput(ctx, conn, request(true, 27182), grpc.UseCompressor("gzip"))
	if err != nil {
		return fmt.Errorf("compressed: %w", err)
	}
	second, err := streamingInput(ctx, conn, request(false, 45904))
	if err != nil {
		return fmt.Errorf("uncompressed: %w", err)
	}
	return checkSize("aggregated payload sizes", first+second, 73086)
}

func outputSizes(ctx context.Context, conn *grpc.ClientConn, parameters []*interop.ResponseParameters) ([]int, error) {
	stream, err := interop.NewTestServiceClient(conn).StreamingOutputCall(ctx, &interop.StreamingOutputCallRequest{ResponseParameters: parameters})
	if err != nil {
		return nil, err
	}
	var sizes []int
	for {
		reply, err := stream.Recv()
		if err == io.EOF {
			return sizes, nil
		}
		if err != nil {
			return sizes, err
		}
		sizes = append(sizes, len(reply.GetPayload().GetBody()))
	}
}

func equalSizes(got, want []int) error {
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("response sizes %v; expected %v", got, want)
	}
	return nil
}

func serverStreaming(ctx context.Context, conn *grpc.ClientConn) error {
	want := []int{31415, 9, 2653, 58979}
	var parameters []*interop.ResponseParameters
	for _, n := range want {
		parameters = append(parameters, &interop.ResponseParameters{Size: int32(n)})
	}
	got, err := outputSizes(ctx, conn, parameters)
	if err != nil {
		return err
	}
	return equalSizes(got, want)
}

func serverCompressedStreaming(ctx context.Context, conn *grpc.ClientConn) error {
	got, err := outputSizes(ctx, conn, []*interop.ResponseParameters{
		{Size: 31415, Compressed: &interop.BoolValue{Value: true}},
		{Size: 92653, Compressed: &interop.BoolValue{Value: false}},
	})
	if err != nil {
		return err
	}
	return equalSizes(got, []int{31415, 92653})
}

func pingPong(ctx context.Context, conn *grpc.ClientConn) error {
	stream, err := interop.NewTestServiceClient(conn).FullDuplexCall(ctx)
	if err != nil {
		return err
	}
	for _, step := range [][2]int{{31415, 27182}, {9, 8}, {2653, 1828}, {58979, 45904}} {
		request := &interop.StreamingOutputCallRequest{
			ResponseParameters: []*interop.ResponseParameters{{Size: int32(step[0])}}, Payload: zeros(step[1])}
		if err := stream.Send(request); err != nil {
			return err
		}
		reply, err := stream.Recv()
		if err != nil {
			return err
		}
		if err := checkSize("response", len(reply.GetPayload().GetBody()), step[0]); err != nil {
			return err
		}
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	if _, err := stream.Recv(); err != io.EOF {
		return fmt.Errorf("after half-close: %v; expected the end of the stream", err)
	}
	return nil
}

func emptyStream(ctx context.Context, conn *grpc.ClientConn) error {
	stream, err := interop.NewTestServiceClient(conn).FullDuplexCall(ctx)
	if err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	if reply, err := stream.Recv(); err != io.EOF {
		return fmt.Errorf("got %v, %v; expected no response", reply, err)
	}
	return nil
}

func timeoutOnSleepingServer(ctx context.Context, conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	stream, err := interop.NewTestServiceClient(conn).FullDuplexCall(ctx)
	if err == nil {
		if err = stream.Send(&interop.StreamingOutputCallRequest{Payload: zeros(27182)}); err == nil || err == io.EOF {
			_, err = stream.Recv() // the client waits
		}
	}
	return expectCode(err, codes.DeadlineExceeded, nil)
}

func cancelAfterBegin(ctx context.Context, conn *grpc.ClientConn) error {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := interop.NewTestServiceClient(conn).StreamingInputCall(ctx)
	if err != nil {
		cancel()
		return err
	}
	cancel()
	// Receive without half-closing: the server waits for the end of the requests, so only the
	// cancellation can end the call (CloseAndRecv could send END_STREAM before the cancel is seen).
	var reply interop.StreamingInputCallResponse
	return expectCode(stream.RecvMsg(&reply), codes.Canceled, nil)
}

func cancelAfterFirstResponse(ctx context.Context, conn *grpc.ClientConn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := interop.NewTestServiceClient(conn).FullDuplexCall(ctx)
	if err != nil {
		return err
	}
	request := &interop.StreamingOutputCallRequest{ResponseParameters: []*interop.ResponseParameters{{Size: 31415}}, Payload: zeros(27182)}
	if err := stream.Send(request); err != nil {
		return err
	}
	if _, err := stream.Recv(); err != nil {
		return err
	}
	cancel()
	_, err = stream.Recv()
	return expectCode(err, codes.Canceled, nil)
}

func checkEcho(header, trailer metadata.MD) error {
	if got := header.Get(echoInitial); len(got) != 1 || got[0] != "test_initial_metadata_value" {
		return fmt.Errorf("initial metadata %s: %q", echoInitial, got)
	}
	if got := trailer.Get(echoTrailing); len(got) != 1 || got[0] != "\xab\xab\xab" {
		return fmt.Errorf("trailing metadata %s: %q", echoTrailing, got)
	}
	return nil
}

func customMetadata(ctx context.Context, conn *grpc.ClientConn) error {
	ctx = metadata.AppendToOutgoingContext(ctx, echoInitial, "test_initial_metadata_value", echoTrailing, "\xab\xab\xab")
	client := interop.NewTestServiceClient(conn)
	var header, trailer metadata.MD
	if _, err := client.UnaryCall(ctx, &interop.SimpleRequest{ResponseSize: 314159, Payload: zeros(271828)},
		grpc.Header(&header), grpc.Trailer(&trailer)); err != nil {
		return err
	}
	if err := checkEcho(header, trailer); err != nil {
		return fmt.Errorf("UnaryCall: %w", err)
	}
	stream, err := client.FullDuplexCall(ctx)
	if err != nil {
		return err
	}
	request := &interop.StreamingOutputCallRequest{ResponseParameters: []*interop.ResponseParameters{{Size: 314159}}, Payload: zeros(271828)}
	if err := stream.Send(request); err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	if reply, err := stream.Recv(); err != nil || len(reply.GetPayload().GetBody()) != 314159 {
		return fmt.Errorf("FullDuplexCall response: %v", err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		return fmt.Errorf("FullDuplexCall end: %v", err)
	}
	header, err = stream.Header()
	if err != nil {
		return err
	}
	if err := checkEcho(header, stream.Trailer()); err != nil {
		return fmt.Errorf("FullDuplexCall: %w", err)
	}
	return nil
}

func statusAndMessage(message string) testCase {
	return func(ctx context.Context, conn *grpc.ClientConn) error {
		client := interop.NewTestServiceClient(conn)
		echo := &interop.EchoStatus{Code: 2, Message: message}
		_, err := client.UnaryCall(ctx, &interop.SimpleRequest{ResponseStatus: echo})
		if err := expectCode(err, codes.Unknown, &message); err != nil {
			return fmt.Errorf("UnaryCall: %w", err)
		}
		stream, err := client.FullDuplexCall(ctx)
		if err != nil {
			return err
		}
		if err := stream.Send(&interop.StreamingOutputCallRequest{ResponseStatus: echo}); err != nil && err != io.EOF {
			return err
		}
		if err := stream.CloseSend(); err != nil {
			return err
		}
		_, err = stream.Recv()
		if err := expectCode(err, codes.Unknown, &message); err != nil {
			return fmt.Errorf("FullDuplexCall: %w", err)
		}
		return nil
	}
}

func unimplementedMethod(ctx context.Context, conn *grpc.ClientConn) error {
	_, err := interop.NewTestServiceClient(conn).UnimplementedCall(ctx, &interop.Empty{})
	return expectCode(err, codes.Unimplemented, nil)
}

func unimplementedService(ctx context.Context, conn *grpc.ClientConn) error {
	_, err := interop.NewUnimplementedServiceClient(conn).UnimplementedCall(ctx, &interop.Empty{})
	return expectCode(err, codes.Unimplemented, nil)
}

var cases = map[string]testCase{
	"empty_unary":                 emptyUnary,
	"large_unary":                 largeUnary,
	"client_compressed_unary":     clientCompressedUnary,
	"server_compressed_unary":     serverCompressedUnary,
	"client_streaming":            clientStreaming,
	"client_compressed_streaming": clientCompressedStreaming,
	"server_streaming":            serverStreaming,
	"server_compressed_streaming": serverCompressedStreaming,
	"ping_pong":                   pingPong,
	"empty_stream":                emptyStream,
	"timeout_on_sleeping_server":  timeoutOnSleepingServer,
	"cancel_after_begin":          cancelAfterBegin,
	"cancel_after_first_response": cancelAfterFirstResponse,
	"custom_metadata":             customMetadata,
	"status_code_and_message":     statusAndMessage("test status message"),
	"special_status_message":      statusAndMessage(specialMessage),
	"unimplemented_method":        unimplementedMethod,
	"unimplemented_service":       unimplementedService,
}

func main() {
	host := flag.String("server_host", "127.0.0.1", "server host")
	port := flag.Int("server_port", 0, "server port")
	which := flag.String("test_case", "all", "comma-separated cases, or all")
	flag.Parse()
	var names []string
	if *which == "all" {
		for name := range cases {
			names = append(names, name)
		}
		sort.Strings(names)
	} else {
		names = strings.Split(*which, ",")
	}
	for _, name := range names {
		if _, ok := cases[name]; !ok {
			fmt.Fprintf(os.Stderr, "unknown test case %q\n", name)
			os.Exit(2)
		}
	}
	if *port == 0 {
		fmt.Fprintln(os.Stderr, "--server_port is required")
		os.Exit(2)
	}
	conn, err := grpc.Dial(net.JoinHostPort(*host, strconv.Itoa(*port)), grpc.WithInsecure(), grpc.WithBlock(),
		grpc.WithTimeout(10*time.Second))
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot connect: %v\n", err)
		os.Exit(1)
	}
	defer conn.Close()
	failed := false
	for _, name := range names {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		err := cases[name](ctx, conn)
		cancel()
		if err != nil {
			failed = true
			fmt.Printf("FAIL %s: %v\n", name, err)
		} else {
			fmt.Printf("ok %s\n", name)
		}
	}
	if failed {
		os.Exit(1)
	}
}
