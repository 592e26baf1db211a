"""The read API (the serve role): recommendations, similar items, health and metrics, read from
Redis and Kafka metadata only; it never imports the worker."""
