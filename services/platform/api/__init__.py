"""gRPC api processes: the grpcio server bootstrap, auth, and the client for calling another service. No eventlet here."""
