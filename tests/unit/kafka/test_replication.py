"""STREAMREC_REPLICATION_FACTOR reaches every topic we create (and those Faust creates), with a
majority as min.insync.replicas, and every producer waits for it; too few brokers is one line."""

from __future__ import annotations

import faust
import pytest

from stream_app.kafka.admin import (
    ReplicationMismatch,
    _check_brokers,
    durability_configs,
    topic_specs,
)
from stream_app.settings import ConfigError, Settings
from stream_app.worker.app import faust_settings
from stream_app.worker.topology import declare


def test_every_topic_we_create_is_replicated_with_a_majority_in_sync() -> None:
    specs = topic_specs(Settings(replication_factor=3))
    assert len(specs) == 8
    for spec in specs:
        assert spec.replication_factor == 3, spec.name
        assert spec.configs["min.insync.replicas"] == "2", spec.name
    items = next(s for s in specs if s.name == "items")
    assert items.configs["cleanup.policy"] == "compact"  # kept beside the new config


def test_a_single_replica_says_min_insync_1_rather_than_take_a_clusters_default() -> None:
    assert all(spec.configs["min.insync.replicas"] == "1" for spec in topic_specs(Settings()))


def test_faust_creates_its_topics_replicated_and_sends_with_acks_all() -> None:
    settings = Settings(replication_factor=3, app_id="unit-replicated")
    conf = faust_settings(settings)
    assert conf["topic_replication_factor"] == 3
    assert conf["producer_acks"] == -1  # Faust's spelling of acks=all
    topology = declare(faust.App(settings.app_id, **conf), settings)
    durable = durability_configs(settings)
    for table in (topology.history, topology.item_stats):
        assert table.changelog_topic.config == durable, table.name
    assert topology.deltas.config == durable


def test_a_bad_replication_factor_stops_start_up_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="STREAMREC_REPLICATION_FACTOR='0' is invalid"):
        Settings.from_env({"STREAMREC_REPLICATION_FACTOR": "0"})


class OneBrokerAdmin:
    """kafka-python's ``KafkaAdminClient.describe_cluster``, answering for one broker."""

    def describe_cluster(self) -> dict:
        return {"brokers": [{"broker_id": 1, "host": "127.0.0.1", "port": 9092}]}


def test_more_replicas_than_brokers_is_one_clear_message() -> None:
    settings = Settings(replication_factor=3)
    with pytest.raises(ReplicationMismatch) as caught:
        _check_brokers(OneBrokerAdmin(), settings, 3)
    assert str(caught.value).startswith(
        "STREAMREC_REPLICATION_FACTOR=3 but the Kafka cluster at 127.0.0.1:9092 has 1 broker(s)"
    )
    _check_brokers(OneBrokerAdmin(), Settings(), 1)  # a single broker is never asked
