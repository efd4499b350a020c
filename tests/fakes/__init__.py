"""In-memory stand-ins for the infrastructure (Kafka, ...), shared by the test suites."""
