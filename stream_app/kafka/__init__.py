"""The Kafka side: topic specs and admin, the Faust transport's fixes, the raw event schema, and
the readers/writers of the event log and the model-updates topic. Adapters only: no model code."""
