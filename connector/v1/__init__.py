"""Generated protobuf and gRPC code (python protos/generate.py). Do not edit."""
