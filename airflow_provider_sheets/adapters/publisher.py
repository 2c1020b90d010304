"""Publish records through the ``kafka`` connection, fail closed, and account for every ack."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any, NoReturn

from confluent_kafka import KafkaError, KafkaException

from airflow_provider_sheets.adapters.kafka_config import SheetsProducerHook, client_config, redact
from airflow_provider_sheets.errors import KafkaConfigError, KafkaPublishError, ProducerFencedError
from airflow_provider_sheets.model.retention import TimeLimit, time_limit

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]
#: ``(key, value, headers, timestamp)``
Message = tuple[bytes, bytes, Headers, int]


#: ``Producer.produce``'s partition and timestamp defaults (the partitioner's choice; now). Records
#: are produced with positional arguments: with keywords, the C argument parser builds and hashes
#: a string per keyword on every call (0.06 µs of the ~1.9 µs a call takes with ten headers).
_ANY_PARTITION = -1
_NOW = 0

_FENCING_CODES = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})


def _purge(producer: Any) -> Any:
    """Drop every queued and in-flight record, serving their delivery reports; return a fatal error."""
    producer.purge(in_queue=True, in_flight=True, blocking=True)
    try:
        producer.flush(0)
    except KafkaException as err:  # a producer in a fatal state (e.g. fenced) refuses to flush
        log.debug("Flushing after the purge: %s", redact(str(err)))
        return err.args[0]
    return None


def _is_fencing(error: Any) -> bool:
    """Whether a ``KafkaError`` says a newer producer with our ``transactional.id`` took over."""
    return isinstance(error, KafkaError) and error.code() in _FENCING_CODES


class Publisher:
    """
    Produce records to one topic and account for every one of them.

    The producer reports failed records only (``delivery.report.only.error``): a record is known
    to be acknowledged once a flush has emptied the producer's queue without a failure report
    (:meth:`settle`, :meth:`finish`).

    Delivery semantics: :meth:`finish` returns only when every produced record has been
    acknowledged by the broker (``acks=all``); otherwise it raises :class:`KafkaPublishError`
    after purging whatever is still queued, so that nothing of a failed attempt is delivered
    later. Records acked before the failure stay in the topic; what a retry re-sends is the
    caller's to say (the operator's watermark, the stream runner's position).

    :param topic: the destination topic.
    :param kafka_config_id: the ``kafka`` connection id.
    :param flush_timeout: seconds :meth:`finish` waits for outstanding acks.
    :param producer_config: extra librdkafka settings applied over the connection's.
    :param transactional_id: when set, the records of one run are written in one Kafka
        transaction (exactly-once mode): :meth:`begin` fences any older producer with the same id,
        :meth:`finish` commits, :meth:`abort` aborts, and ``read_committed`` consumers see either
        all of a run's records or none.
    """

    def __init__(
        self,
        topic: str,
        kafka_config_id: str = "kafka_default",
        flush_timeout: float = 300.0,
        producer_config: dict[str, Any] | None = None,
        transactional_id: str | None = None,
    ) -> None:
        self.topic = topic
        self.kafka_config_id = kafka_config_id
        self.flush_timeout = flush_timeout
        self.producer_config = dict(producer_config or {})
        self.transactional_id = transactional_id
        if transactional_id:
            self.producer_config["transactional.id"] = transactional_id
            self.producer_config.setdefault("transaction.timeout.ms", 900_000)
        self.in_transaction = False
        self.produced = 0
        #: records known to be acknowledged: all those produced before the last complete flush
        self.acked = 0
        self._callback = self._on_delivery
        self.errors: list[str] = []
        self.error_count = 0
        self.fenced = False
        #: an abort that could not reach the broker: the transaction ends at its timeout or on fencing
        self.transaction_left_open = False
        #: records to the publisher's topic stamped with the publish time: their event time is older than it keeps
        self.restamped = 0

    @cached_property
    def hook(self) -> SheetsProducerHook:
        return SheetsProducerHook(
            self.kafka_config_id,
            overrides=self.producer_config,
            max_message_timeout_ms=max(1000, int(self.flush_timeout * 1000) - 1000),
        )

    @cached_property
    def producer(self):
        return self.hook.get_producer()

    def check_topic(self, topic: str | None = None, timeout: float = 15.0) -> int:
        """
        Fail fast, before anything is read, when the broker is unreachable or the topic is missing.

        :param topic: the topic to check; default the publisher's.
        :return: the topic's partition count.
        """
        name = topic or self.topic
        try:
            # all topics: a metadata request naming the topic would auto-create it on brokers that allow that
            metadata = self.producer.list_topics(timeout=timeout)
        except KafkaException as err:
            raise KafkaPublishError(
                f"cannot reach the Kafka brokers of connection {self.kafka_config_id!r} within {timeout:.0f} s "
                f"({redact(str(err))}). Check bootstrap.servers and the network/credentials settings in "
                f"its extra."
            ) from None
        found = metadata.topics.get(name)
        if found is None or found.error is not None or not found.partitions:
            detail = f" ({found.error.str()})" if found is not None and found.error is not None else ""
            raise KafkaConfigError(
                f"topic {name!r} does not exist or is not authorised for connection "
                f"{self.kafka_config_id!r}{detail}. Create it first, e.g. "
                f"kafka-topics.sh --create --topic {name} --partitions 3, or grant this principal "
                f"WRITE and DESCRIBE on it."
            )
        return len(found.partitions)

    def _replica_shortfall(self) -> str:
        """
        Why records may have timed out: partitions of the topic with replicas out of sync. With
        ``acks=all`` the broker refuses writes to such a partition once fewer than
        ``min.insync.replicas`` are in sync, and librdkafka retries until ``message.timeout.ms``.
        """
        try:
            found = self.producer.list_topics(self.topic, timeout=5).topics.get(self.topic)
        except Exception:  # noqa: BLE001 - a hint only; the broker may be gone
            return ""
        short = [p for p in (found.partitions.values() if found else ()) if len(p.isrs) < len(p.replicas)]
        if not short:
            return ""
        parts = ", ".join(f"partition {p.id}: {len(p.isrs)} of {len(p.replicas)} replicas in sync" for p in short)
        return (
            f"; topic {self.topic!r} has under-replicated partitions ({parts}): with acks=all the brokers refuse "
            f"writes while fewer than min.insync.replicas are in sync (NOT_ENOUGH_REPLICAS, retried until "
            f"message.timeout.ms). Bring the replicas' brokers back or lower the topic's min.insync.replicas"
        )

    def close(self) -> None:
        """Release the producer's connections and threads (a worker process lives on after the task)."""
        if "producer" not in self.__dict__:
            return
        producer = self.__dict__.pop("producer")
        if self.in_transaction:
            # a run that stopped before publishing (bad input, drift) or on an error that did not go
            # through abort(): end its transaction now (best effort: the broker aborts it at its timeout)
            self._abort_transaction(producer, 10)
        _purge(producer)
        close = getattr(producer, "close", None)
        if close is not None and not self.transaction_left_open:
            # Producer.close() aborts an unfinished transaction with no time limit: with the broker
            # gone it would never return. Dropping the producer frees it at once.
            close()

    def settle(self, timeout: float) -> bool:
        """
        Wait up to ``timeout`` seconds until every record produced so far is acknowledged.

        :return: ``True`` when all of them are (and none failed), so that a checkpoint may claim
            them; ``False`` when some are still under way or one failed (:meth:`finish` says which).
        """
        if self.error_count:
            return False
        produced = self.produced
        try:
            if self.producer.flush(timeout) or self.error_count:
                return False
        except KafkaException as err:  # a producer in a fatal state: finish() reports it
            log.debug("Flushing for a checkpoint: %s", redact(str(err)))
            return False
        self.acked = produced
        return True

    def _on_delivery(self, err, msg) -> None:
        if err is None:  # not reported with delivery.report.only.error; counted by settle()
            return
        self.error_count += 1
        self.fenced = self.fenced or _is_fencing(err)
        if len(self.errors) < 10:
            key = msg.key().decode("utf-8", "replace") if msg is not None and msg.key() else "?"
            self.errors.append(f"key {key}: {err.str()}")

    def begin(self, timeout: float = 60.0) -> None:
        """Start the run's transaction (exactly-once mode; a no-op otherwise)."""
        if not self.transactional_id:
            return
        try:
            self.producer.init_transactions(timeout)
            self.producer.begin_transaction()
        except KafkaException as err:
            raise KafkaPublishError(
                f"could not start a Kafka transaction with transactional.id {self.transactional_id!r}: "
                f"{redact(str(err))}. The cluster must support transactions (and this principal needs WRITE "
                f"on that transactional id); or use delivery='at_least_once'."
            ) from None
        self.in_transaction = True

    def send(
        self, key: bytes, value: bytes | None, headers: Headers, topic: str | None = None, timestamp: int = _NOW
    ) -> None:
        """Queue one record (to ``topic``, default the publisher's); waits for room when the queue is full."""
        producer = self.producer
        while True:
            try:
                producer.produce(
                    topic or self.topic, value, key, _ANY_PARTITION, self._callback, None, timestamp, headers
                )
                break
            except BufferError:  # the queue is full: serve reports and give the broker threads a moment
                producer.poll(0.005)
            except KafkaException as err:  # a fatal producer error (e.g. fenced) refuses every produce
                self._fatal(err, "refused a record")
        self.produced += 1
        if self.error_count:
            self.abort(f"{self.error_count} record(s) failed to deliver while producing")

    def send_many(self, messages: Iterable[Message], topic: str | None = None) -> None:
        """
        Queue ``(key, value, headers, timestamp)`` messages to ``topic`` (default the publisher's):
        :meth:`send` for a page, without a Python call per record. ``timestamp``: the record's
        CreateTime in epoch ms (0: now); to the publisher's topic, one older than the topic keeps
        (:meth:`time_limit`) is replaced by the publish time, so that Kafka does not delete (or
        refuse) the record as soon as it is written.
        """
        produce, topic, callback = self.producer.produce, topic or self.topic, self._callback
        if topic == self.topic:
            messages = self._kept(messages)
        sent = 0
        try:
            for key, value, headers, timestamp in messages:
                try:
                    produce(topic, value, key, _ANY_PARTITION, callback, None, timestamp, headers)
                    sent += 1
                except (BufferError, KafkaException):  # no room yet, or a fatal error: send() handles both
                    self.produced += sent
                    sent = 0
                    self.send(key, value, headers, topic, timestamp)
        finally:
            self.produced += sent
        if self.error_count:
            self.abort(f"{self.error_count} record(s) failed to deliver while producing")

    def _kept(self, messages: Iterable[Message]) -> list[Message]:
        """``messages``, those stamped earlier than the topic keeps stamped with the publish time instead."""
        messages = list(messages)
        stamped = [m[3] for m in messages if m[3]]
        if not stamped or self.time_limit is None:
            return messages
        oldest = self.time_limit.oldest(int(time.time() * 1000))
        if min(stamped) >= oldest:
            return messages
        self.restamped += sum(1 for stamp in stamped if stamp < oldest)
        return [m if not m[3] or m[3] >= oldest else (m[0], m[1], m[2], _NOW) for m in messages]

    @cached_property
    def time_limit(self) -> TimeLimit | None:
        """
        How old a record's timestamp may be for the publisher's topic to keep it (read once, from
        the topic's configuration); ``None``: no limit, or a broker that does not describe it.
        """
        from confluent_kafka.admin import AdminClient, ConfigResource

        resource = ConfigResource("topic", self.topic)
        try:
            admin = AdminClient(client_config(self.kafka_config_id, self.producer_config))
            entries = admin.describe_configs([resource], request_timeout=10)[resource].result(timeout=15)
        except Exception as err:  # noqa: BLE001 - the topic's settings only decide whether to restamp
            log.debug("Could not read the configuration of topic %r: %s", self.topic, redact(str(err)))
            return None
        return time_limit({name: entry.value for name, entry in entries.items()})

    def poll(self) -> None:
        """Serve delivery reports without blocking."""
        try:
            self.producer.poll(0)
        except KafkaException as err:  # a fatal producer error (e.g. fenced) surfaces here too
            self._fatal(err, "failed")

    def _fatal(self, err: KafkaException, what: str) -> NoReturn:
        self.fenced = self.fenced or _is_fencing(err.args[0])
        self.abort(f"the producer {what} ({redact(str(err))})")

    def finish(self) -> int:
        """
        Wait until every produced record is acknowledged.

        :return: the number of acknowledged records (equal to the number produced).
        :raises KafkaPublishError: a record failed or the flush timed out; the queue is purged.
        """
        if not self.produced and not self.in_transaction:
            return 0
        deadline = time.monotonic() + self.flush_timeout
        try:
            remaining = self.producer.flush(self.flush_timeout)
            while remaining and time.monotonic() < deadline:
                remaining = self.producer.flush(max(0.1, deadline - time.monotonic()))
        except KafkaException as err:
            self._fatal(err, "failed while flushing")
        if remaining:
            self.abort(f"{remaining} record(s) were still unacknowledged after {self.flush_timeout:.0f} s")
        if self.error_count:
            self.abort(f"{self.error_count} record(s) failed to deliver")
        if self.in_transaction:
            try:
                self.producer.commit_transaction(self.flush_timeout)
            except KafkaException as err:
                self._fatal(err, "did not commit the transaction")
            self.in_transaction = False
        self.acked = self.produced  # every record delivered (and, in a transaction, committed)
        return self.acked

    def _abort_transaction(self, producer: Any, timeout: float) -> None:
        """
        End the open transaction as aborted. librdkafka purges the queue and waits for the requests
        already in flight before it writes the abort: purging those first (``_purge``) would let the
        abort overtake them, and their records would be appended after it, visible to
        ``read_committed`` consumers.
        """
        self.in_transaction = False
        if self.fenced:  # a fenced producer cannot abort; the newer attempt already has
            return
        try:
            producer.abort_transaction(timeout)
            return
        except KafkaException as err:
            self.fenced = _is_fencing(err.args[0])
            if not self.fenced:
                log.warning("Aborting the Kafka transaction failed: %s", redact(str(err)))
        except Exception as err:  # noqa: BLE001 - the run fails either way; say why the abort failed
            log.warning("Aborting the Kafka transaction failed: %s", redact(str(err)))
        # the broker aborts it at transaction.timeout.ms, or the next attempt's init_transactions does
        self.transaction_left_open = not self.fenced

    def raise_if_fenced(self, timeout: float = 5.0) -> None:
        """
        In a transaction: give the broker up to ``timeout`` seconds to refuse what this attempt
        produced, and raise :class:`ProducerFencedError` when it was fenced by a newer attempt
        (which a lost lease suggests); otherwise return.
        """
        if not self.in_transaction:
            return
        for step in (lambda: self.producer.flush(timeout), lambda: self.producer.poll(0)):
            try:
                step()
            except KafkaException as err:
                self.fenced = self.fenced or _is_fencing(err.args[0])
            except SystemError:  # confluent-kafka's flush() of a producer in a fatal state raises no proper error
                log.debug("The producer is in a fatal state; its error comes from the purge.")
        if self.fenced or self.error_count:
            self.abort("its lease was taken over meanwhile")

    def abort(self, reason: str) -> NoReturn:
        """End the transaction (if any), purge what is still queued or in flight, raise :class:`KafkaPublishError`."""
        producer = self.producer
        if self.in_transaction:
            self._abort_transaction(producer, 30)
        self.fenced = _is_fencing(_purge(producer)) or self.fenced
        detail = "; ".join(self.errors[:5])
        hint = self._replica_shortfall() if "timed out" in detail or "unacknowledged" in reason else ""
        if self.fenced:
            raise ProducerFencedError(
                f"this attempt was fenced: a newer producer with transactional.id {self.transactional_id!r} "
                f"started (a retry of this task, or the same task running elsewhere), so Kafka aborted this "
                f"attempt's transaction: read_committed consumers never see its {self.produced} records, and "
                f"the watermark is left to the newer attempt ({reason}). Nothing to fix if a retry is running; "
                f"otherwise make sure only one Airflow deployment runs this DAG."
            )
        raise KafkaPublishError(
            f"publishing to topic {self.topic!r} failed: {reason}"
            + (f" (first errors: {detail})" if detail else "")
            + hint
            + f". At least {self.acked} of {self.produced} records were acknowledged before the failure; the "
            f"rest were purged from the producer's queue and are not retried by it."
        )
