"""The Faust worker (the compute role): the app and its agents, the per-batch live path, the
online scorer with its River rankers, the session-model slot, and the telemetry it writes."""
