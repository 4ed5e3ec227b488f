"""The MongoDB connection each service opens to its own database, and its indexes."""
