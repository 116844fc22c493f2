//! What every Vero service binary shares, so each `main.rs` stays a few lines:
//!
//! * [`settings::load`]: layered configuration (defaults file, environment overlay,
//!   `VERO__SECTION__KEY` variables), deserialized and validated into the service's
//!   own settings struct, with errors that name the key.
//! * [`telemetry::init`]: structured logs (`VERO_LOG_FORMAT=json|text`, `RUST_LOG`).
//! * [`shutdown::signal`]: a token cancelled on SIGINT or SIGTERM.
//! * [`retry::Retry`]: the one retry policy of a failing side effect, by failure
//!   class, over [`backoff::Backoff`] and [`health::Health`] (readiness state).
//! * [`dead_letter::DeadLetters`]: the dead-letter topic both consumers write, with
//!   the value-dropped fallback and retries that never send a letter twice.
//! * [`kafka_properties::KafkaProperties`]: `kafka.properties`, the extra librdkafka
//!   settings of every Kafka client (SASL/TLS), secrets redacted, the properties the
//!   guarantees depend on refused.
//! * [`kafka_failure::Cause`]: every librdkafka error classified once (retryable,
//!   operator-fixable, the record's fault), for every producer of every service.
//! * [`kafka_security::Watch`]: a Kafka connection refused for its credentials or
//!   certificates is reported once, naming the setting, holds `/readyz` and
//!   `needs_operator` until Kafka accepts the connection again.
//! * [`read_errors::ReadErrors`]: a consumer's read errors by class; one an operator
//!   must fix (an ACL) holds `/readyz` and `needs_operator` until a record is read.
//! * [`offset_gaps::OffsetGaps`]: records a consumer skipped because the broker had
//!   deleted them become a metric and an error log instead of passing unnoticed.
//! * [`dlq_replay`]: `replay-dlq` (dead letters back to their topic) and the rule that a
//!   record put back is applied only by the consumer that dead-lettered it.
//! * [`partitions`]: the lifecycle of a consumer's partitions (owned, blocked on an
//!   unknown schema, parked on a failing shard, paused for a long write, revoked) as
//!   one state machine, and the rebalance record its callbacks keep for the loop.
//! * [`producer_retries`]: `kafka.idempotent_producer`, how every producer keeps
//!   librdkafka's retries from duplicating or reordering a record.
//! * [`to_end::ToEnd`]: reading partitions up to where they ended when the read began
//!   (the profile consumer's restore, `replay-dlq`).
//! * [`group_context::GroupContext`]: both consumers' librdkafka callbacks (rebalances,
//!   lag, assigned partitions, offset gaps, the Kafka watch).
//! * [`ops`]: the operator endpoints `/metrics`, `/healthz` and `/readyz` for the
//!   consumers (the gateway serves the same paths on its own router).

pub mod backoff;
pub mod dead_letter;
pub mod dlq_replay;
pub mod group_consumer;
pub mod group_context;
pub mod group_protocol;
pub mod health;
pub mod kafka_failure;
pub mod kafka_properties;
pub mod kafka_security;
pub mod offset_gaps;
pub mod ops;
pub mod partitions;
pub mod producer_retries;
pub mod read_errors;
pub mod retry;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod to_end;
