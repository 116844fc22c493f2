//! The records every Kafka/ClickHouse baseline sends: track events built from the
//! load generator's own request bodies, the way the gateway builds them (token
//! dropped, identity attributes, `data` and `extras` kept as JSON text), Avro
//! single-object encoded with `vero_model`. Baseline and pipeline therefore move the
//! same bytes.

use rand::SeedableRng;
use uuid::Uuid;
use vero_loadgen::workload::Workload;
use vero_loadgen::LoadConfig;
use vero_model::TrackEvent;

use crate::trivial_server::{parse_and_check, UserId};

/// `n` track events of run `run_id`, as the gateway would have built them.
pub fn track_events(n: u64, run_id: &str) -> Vec<TrackEvent> {
    let config = LoadConfig::for_url("http://127.0.0.1:1/api/v2/events/track");
    let workload = Workload::new(&config, run_id);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(42);
    let mut body = Vec::new();
    let received_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    (0..n)
        .map(|seq| {
            workload.body(seq, &mut rng, &mut body);
            let request = parse_and_check(&body, &config.token).expect("the workload builds valid requests");
            let identity = request.identity.expect("checked");
            let user_id = match identity.id.expect("checked") {
                UserId::Text(id) => id,
                UserId::Number(n) => n.to_string(),
            };
            let extras = request.extras.unwrap_or_default();
            TrackEvent {
                event_id: Uuid::now_v7(),
                received_at,
                project: "local".into(),
                event_name: request.event_name.expect("checked"),
                user_id,
                email: identity.email,
                identity_attributes: serde_json::Value::Object(identity.attributes).to_string(),
                data: serde_json::Value::Object(request.data.unwrap_or_default()).to_string(),
                development_mode: request.development_mode.unwrap_or(false),
                created_at: None,
                source: extras.get("source").and_then(|s| s.as_str()).map(str::to_owned),
                extras: serde_json::Value::Object(extras).to_string(),
                user_agent: Some("vero-loadgen".into()),
            }
        })
        .collect()
}

/// `(key, Avro payload)` pairs, ready to produce.
pub fn encoded(events: &[TrackEvent]) -> Vec<(Vec<u8>, Vec<u8>)> {
    events.iter().map(|e| (e.key().to_vec(), vero_model::encode_event(e))).collect()
}

/// One JSONEachRow line with the columns the event sink inserts (the table's
/// DEFAULT expressions fill the rest), for the `clickhouse-client` baseline.
pub fn json_each_row(event: &TrackEvent, partition: i32, offset: i64) -> String {
    serde_json::json!({
        "event_id": event.event_id.to_string(),
        "project": event.project,
        "event_name": event.event_name,
        "user_id": event.user_id,
        "email": event.email,
        "identity": event.identity_attributes,
        "data": event.data,
        "extras": event.extras,
        "source": event.source,
        "user_agent": event.user_agent,
        "development_mode": u8::from(event.development_mode),
        "received_at_ms": event.received_at,
        "created_at_ms": event.created_at,
        "kafka_partition": partition,
        "kafka_offset": offset,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_the_run_markers_and_round_trip() {
        let events = track_events(3, "run-x");
        assert_eq!(events.len(), 3);
        let data: serde_json::Value = serde_json::from_str(&events[2].data).unwrap();
        assert_eq!(data["loadgen_run"], "run-x");
        assert_eq!(data["loadgen_seq"], 2);
        assert_eq!(events[0].source.as_deref(), Some("vero-loadgen"));
        let (key, payload) = &encoded(&events)[1];
        assert_eq!(key, events[1].user_id.as_bytes());
        assert_eq!(vero_model::decode_event(payload).unwrap(), events[1]);
        let row: serde_json::Value = serde_json::from_str(&json_each_row(&events[0], 1, 7)).unwrap();
        assert_eq!(row["kafka_offset"], 7);
        assert_eq!(row["data"], events[0].data);
    }
}
