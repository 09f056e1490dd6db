"""Stand-in for botocore: an S3 client that really sends its requests (to an endpoint_url), retries as the
standard retry mode does, and raises ClientError with botocore's message."""
