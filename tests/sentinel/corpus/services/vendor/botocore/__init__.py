"""Stand-in for botocore: a JSON-protocol client (Kinesis) over HTTP, with botocore's retries and ClientError."""
