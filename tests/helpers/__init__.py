"""What the tests share: starting test servers, ports, waiting on conditions, hostile-input
checks, a raw HTTP/2 client, test certificates and the test services. The tests' own code:
neither the installed package nor the dev harness (bench/, soak/) depends on it, nor it on them."""
