"""Benchmarks: org sync, dispatch, grants and memory, each through the real path (sandbox, control plane and
agent as separate processes, real gRPC, real botocore over HTTP). `connector bench --help`; method and
figures in docs/performance.md."""
