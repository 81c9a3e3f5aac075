"""GMF's tests, laid out like the package: protocol/, rpc/, runtime/, workers/, services/,
tls/, cli/, observability/ test those parts; attacks/ the hostile-input defences; peers/ GMF
against other implementations; toolkit/, bench/, fuzzing/ the toolkit and the dev harness.
What they share is in helpers/ (see tests/helpers/__init__.py)."""
