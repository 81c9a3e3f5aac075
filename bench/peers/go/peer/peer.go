// Package peer is what the Go benchmark servers share: the command line of the Python peers
// (--host, --port), the readiness line, and a graceful stop on SIGTERM or SIGINT.
//
// GOMAXPROCS comes from the environment (Go's runtime reads it; unset means one per CPU in
// the process's affinity mask, so `taskset -c 0` alone gives 1). The readiness line says
// which value is in force.
package peer

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/grpc"
)

// Grace is how long in-flight RPCs get after SIGTERM before the server closes everything.
const Grace = time.Second

// Serve parses the command line, listens, registers the services and serves until
// SIGTERM/SIGINT. It prints "NAME listening on HOST:PORT (GOMAXPROCS=N)" once the port
// accepts (PORT is the bound one, so --port 0 works).
func Serve(name string, register func(*grpc.Server)) {
	host := flag.String("host", "0.0.0.0", "address to bind")
	port := flag.Int("port", 50051, "TCP port to listen on (0: any free port)")
	flag.Parse()

	listener, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	server := grpc.NewServer()
	register(server)

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()
	bound := listener.Addr().(*net.TCPAddr).Port
	fmt.Printf("%s listening on %s:%d (GOMAXPROCS=%d)\n", name, *host, bound, runtime.GOMAXPROCS(0))

	select {
	case err := <-served:
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	case <-signals:
	}
	stopped := make(chan struct{})
	go func() {
		server.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(Grace):
		server.Stop()
	}
}
