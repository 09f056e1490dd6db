"""Stand-in for google-api-core: its exception classes and a REST call that raises them."""
