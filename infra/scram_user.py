"""Create or update a SCRAM user (SHA-256 and SHA-512) on a broker; used by ``infra/stack.sh``.

Why a script and not ``kafka-configs --add-config``: the password comes from the environment
(``KAFKA_SASL_PASSWORD``), so it never sits on a command line where ``ps`` shows it, and the
request goes over the plaintext loopback listener the stack script already probes.

    KAFKA_SASL_PASSWORD=... python infra/scram_user.py --kafka 127.0.0.1:9092 --user streamrec
"""

from __future__ import annotations

import argparse
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kafka", required=True, help="bootstrap servers (plaintext listener)")
    parser.add_argument("--user", required=True)
    args = parser.parse_args()
    password = os.environ.get("KAFKA_SASL_PASSWORD", "")
    if not password:
        print("scram_user: KAFKA_SASL_PASSWORD is empty", file=sys.stderr)
        return 2
    from kafka.admin import KafkaAdminClient, UserScramCredentialUpsertion

    admin = KafkaAdminClient(bootstrap_servers=args.kafka.split(","), request_timeout_ms=30_000)
    try:
        failed = {}
        # One request per mechanism: the broker refuses two changes to a user in one request.
        for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            upsert = UserScramCredentialUpsertion(args.user, mechanism, password, iterations=8192)
            errors = admin.alter_user_scram_credentials([upsert])
            failed.update({f"{u} {mechanism}": e for u, e in errors.items() if e})
    finally:
        admin.close()
    if failed:
        print(f"scram_user: the broker refused: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
