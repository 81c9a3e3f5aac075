// Command streambench serves streambench.StreamBench (proto/streambench/streambench.proto)
// on grpc-go with the answers GMF's and grpcio's servers give for the same requests.
//
//	streambench --port 50051 [--host 0.0.0.0]  (GOMAXPROCS=1 for one core)
package main

import (
	"fmt"
	"io"

	"gmfpeers/pb/streambench"
	"gmfpeers/peer"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The limits the proto states (examples/streambench/streambench_service.py has the same).
const (
	maxCount = 1000000
	maxSize  = 1 << 20
)

type streamBench struct {
	streambench.UnimplementedStreamBenchServer
}

func (streamBench) ServerStream(request *streambench.StreamRequest, stream streambench.StreamBench_ServerStreamServer) error {
	if request.Count < 0 || request.Count > maxCount || request.Size < 0 || request.Size > maxSize {
		return status.Error(codes.InvalidArgument,
			fmt.Sprintf("count must be in [0, %d] and size in [0, %d]", maxCount, maxSize))
	}
	chunk := &streambench.Chunk{Body: make([]byte, request.Size)}
	for i := int32(0); i < request.Count; i++ {
		if err := stream.Send(chunk); err != nil {
			return err
		}
	}
	return nil
}

func (streamBench) BidiEcho(stream streambench.StreamBench_BidiEchoServer) error {
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(chunk); err != nil {
			return err
		}
	}
}

func main() {
	peer.Serve("grpc-go-stream", func(server *grpc.Server) {
		streambench.RegisterStreamBenchServer(server, streamBench{})
	})
}
