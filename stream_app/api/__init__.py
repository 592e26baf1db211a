"""The read API (the serve role): recommendations, similar items, health, metrics and the live
dashboard, read from Redis and Kafka metadata only; it never imports the worker."""
