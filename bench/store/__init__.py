"""What is kept on disk: the record's schema, the results folder, claims on cells, the digests binding a record to its inputs."""
