//! How every producer of the services keeps librdkafka's own retries from duplicating
//! or reordering a record: `kafka.idempotent_producer`, one setting per service.
//!
//! * `true` (the default, and what Apache Kafka is run and tested with here):
//!   `enable.idempotence=true`. The broker drops a retried batch it already has and
//!   keeps the order, also across the epoch bump librdkafka makes after a delivery
//!   timed out (KIP-360; `make run`'s test kills the broker under load for that).
//! * `false`, for a Kafka-compatible service that has no idempotent producer (or a
//!   broken one: tansu 0.6, which this project once used, wedged on that epoch bump).
//!   Then: `enable.idempotence=false` with
//!   `max.in.flight.requests.per.connection=1`, so a retry can never overtake the
//!   batch after it (the order per partition holds). What is lost is only the broker's
//!   duplicate check: a retry whose first attempt was written but not acknowledged is
//!   in the topic twice, with the same body, so the same request key, and the
//!   consumers drop the second copy within `dedup.window_ms` like a client's retry.
//!   `acks=all` is kept either way: a 200 still waits for the broker's acknowledgement.

use rdkafka::ClientConfig;

/// The base configuration of every producer of the services: `acks=all` (a record
/// counts as written only once every in-sync replica has it), Java's murmur2 key
/// partitioner (a record keeps the partition a Java client would choose for its key,
/// so per-user order and co-partitioning hold across our producers), a delivery
/// timeout, and retries per `kafka.idempotent_producer` ([`apply`]). Each producer adds
/// its own tuning, then `kafka.properties`.
pub fn producer_config(brokers: &str, message_timeout_ms: u64, idempotent: bool) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("message.timeout.ms", message_timeout_ms.to_string());
    apply(&mut config, idempotent);
    config
}

/// Configure `config` (a producer's) for `kafka.idempotent_producer = idempotent`;
/// without the broker's duplicate check that is said in the log, once per producer.
pub fn apply(config: &mut ClientConfig, idempotent: bool) -> &mut ClientConfig {
    if idempotent {
        return config.set("enable.idempotence", "true");
    }
    tracing::warn!(
        client = config.get("client.id").unwrap_or("rdkafka"),
        "kafka.idempotent_producer = false: one produce request in flight per broker, and a retried \
         record may be in the topic twice (consumers drop it by request key); use only with a broker \
         that does not support idempotent producers"
    );
    config.set("enable.idempotence", "false").set("max.in.flight.requests.per.connection", "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotent_by_default_and_one_in_flight_without() {
        let mut on = ClientConfig::new();
        apply(&mut on, true);
        assert_eq!(on.get("enable.idempotence"), Some("true"));
        assert_eq!(on.get("max.in.flight.requests.per.connection"), None);
        let mut off = ClientConfig::new();
        apply(&mut off, false);
        assert_eq!(off.get("enable.idempotence"), Some("false"));
        assert_eq!(off.get("max.in.flight.requests.per.connection"), Some("1"));
    }
}
