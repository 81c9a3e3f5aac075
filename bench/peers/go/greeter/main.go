// Command greeter serves helloworld.Greeter/SayHello on grpc-go, the answer every peer of
// the benchmark gives: "Hello NAME!".
//
//	greeter --port 50051 [--host 0.0.0.0]      (GOMAXPROCS=1 for one core)
package main

import (
	"context"

	"gmfpeers/pb/helloworld"
	"gmfpeers/peer"

	"google.golang.org/grpc"
)

type greeter struct {
	helloworld.UnimplementedGreeterServer
}

func (greeter) SayHello(_ context.Context, request *helloworld.HelloRequest) (*helloworld.HelloReply, error) {
	return &helloworld.HelloReply{Message: "Hello " + request.GetName() + "!"}, nil
}

func main() {
	peer.Serve("grpc-go", func(server *grpc.Server) {
		helloworld.RegisterGreeterServer(server, greeter{})
	})
}
