"""Client options for every Kafka library we use, built from one ``KafkaAccess``.

Why one module: the worker (Faust over aiokafka), the catalog follower (aiokafka) and the
producer, trainer, admin, lag and offset readers (kafka-python) must all log in the same way;
a client built anywhere else would connect in plaintext and fail only on a secured cluster.
Every TLS connection uses the one ``ssl.SSLContext`` made here (the CA, optional client cert,
hostname checked); passwords leave their ``Secret`` only in these option dicts.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from stream_app.settings import KafkaAccess


def ssl_context(kafka: KafkaAccess) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL (None for plaintext protocols): the system's CAs
    unless a CA file is given, and the broker's certificate and host name always checked.

    >>> ssl_context(KafkaAccess()) is None
    True
    """
    if not kafka.uses_tls:
        return None
    cafile = str(kafka.ssl_cafile) if kafka.ssl_cafile is not None else None
    context = ssl.create_default_context(cafile=cafile)
    if kafka.ssl_certfile is not None:
        keyfile = str(kafka.ssl_keyfile) if kafka.ssl_keyfile is not None else None
        context.load_cert_chain(str(kafka.ssl_certfile), keyfile)
    return context


def _sasl(kafka: KafkaAccess) -> dict[str, Any]:
    if not kafka.uses_sasl:
        return {}
    password = kafka.sasl_password.reveal() if kafka.sasl_password is not None else None
    return {
        "sasl_mechanism": kafka.sasl_mechanism,
        "sasl_plain_username": kafka.sasl_username,
        "sasl_plain_password": password,
    }


def kafka_python_options(kafka: KafkaAccess) -> dict[str, Any]:
    """Keyword arguments for kafka-python's KafkaProducer, KafkaConsumer and KafkaAdminClient.

    >>> kafka_python_options(KafkaAccess("a:9092,b:9092"))
    {'bootstrap_servers': ['a:9092', 'b:9092'], 'security_protocol': 'PLAINTEXT'}
    """
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.servers,
        "security_protocol": kafka.security_protocol,
        **_sasl(kafka),
    }
    context = ssl_context(kafka)
    if context is not None:
        options["ssl_context"] = context
    return options


def aiokafka_options(kafka: KafkaAccess) -> dict[str, Any]:
    """Keyword arguments for aiokafka's clients (the catalog follower's AIOKafkaConsumer).

    >>> aiokafka_options(KafkaAccess("a:9092"))
    {'bootstrap_servers': ['a:9092'], 'security_protocol': 'PLAINTEXT'}
    """
    # The same names as kafka-python's: aiokafka copied its client API.
    return kafka_python_options(kafka)


def faust_credentials(kafka: KafkaAccess) -> Any:
    """Faust's ``broker_credentials`` (None for PLAINTEXT): ``SASLCredentials`` over SASL_*
    (with the TLS context for SASL_SSL), ``SSLCredentials`` for SSL. Faust hands them to
    aiokafka for its consumer, producer and admin client alike.

    >>> faust_credentials(KafkaAccess()) is None
    True
    """
    import faust

    context = ssl_context(kafka)
    if kafka.uses_sasl:
        password = kafka.sasl_password.reveal() if kafka.sasl_password is not None else None
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=password,
            ssl_context=context,
            mechanism=kafka.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


class KafkaLoginRefused(Exception):
    """A broker answered but refused our credentials or TLS: retrying cannot help, so a command
    stops at start-up with this one line instead of retrying until a timeout."""


def check_login(kafka: KafkaAccess, timeout_s: float = 10.0) -> None:
    """Log in once to the first bootstrap server that answers; raise ``KafkaLoginRefused`` when
    it refuses the SASL login, the mechanism or the certificate. Brokers that do not answer
    pass: the clients' own retries and messages cover an outage. Plaintext has no login.

    Why: kafka-python retries a refused login as if the broker were down, and after its
    timeout says only "Unable to bootstrap".
    """
    if kafka.security_protocol == "PLAINTEXT":
        return
    # A loop of our own, never installed as the thread's: Faust's worker creates its loop later
    # and must not find a closed one.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_check_login(kafka, timeout_s))
    finally:
        loop.close()


async def _check_login(kafka: KafkaAccess, timeout_s: float) -> None:
    from aiokafka import errors
    from aiokafka.conn import create_conn

    options = aiokafka_options(kafka)
    del options["bootstrap_servers"]
    for server in kafka.servers:
        host, _, port = server.rpartition(":")
        try:
            conn = await asyncio.wait_for(create_conn(host, int(port), **options), timeout_s)
        except (errors.SaslAuthenticationFailed, errors.UnsupportedSaslMechanismError) as exc:
            reason = str(exc) if isinstance(exc, errors.SaslAuthenticationFailed) else ""
            raise KafkaLoginRefused(
                f"{server} refused the {kafka.sasl_mechanism} login of user "
                f"{kafka.sasl_username!r}" + (f": {reason}" if reason else "")
            ) from None
        except ssl.SSLError as exc:
            raise KafkaLoginRefused(f"TLS with {server} failed: {exc}") from None
        except (OSError, TimeoutError, errors.KafkaError):
            continue  # not answering (yet): the clients' retries and timeouts take it from here
        conn.close()
        return
