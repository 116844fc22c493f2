//! Realistic track request bodies.
//!
//! Each body is a Vero `events/track` JSON request like the documented example: an
//! `identity` with `id` and `email`, an `event_name`, `data` with typical attributes
//! and `extras.source`. Two fields let the end-to-end check find every event again:
//! `data.loadgen_run` (the run id) and `data.loadgen_seq` (unique within the run).
//! Bodies are padded (`data.note`) to a size picked from the configured sizes.
//!
//! Strings that come from flags are JSON-escaped once, up front; the per-request work
//! is a few appends, so the load generator spends its CPU on sending, not on JSON.

use rand::Rng;

use crate::config::LoadConfig;

/// Builds request bodies; shared by all connections (immutable).
#[derive(Debug, Clone)]
pub struct Workload {
    /// `{"auth_token":"...",` with the token escaped.
    token_field: String,
    /// Events per request (`--batch`).
    batch: usize,
    /// Escaped `"event_name":"..."` fragments.
    event_fields: Vec<String>,
    /// Escaped run id as a JSON string.
    run_json: String,
    users: u64,
    sizes: Vec<usize>,
    /// Put `extras.message_id` (`<run>-<seq>`) in every body.
    message_ids: bool,
}

const ITEMS: [&str; 4] = ["Blue shoes", "Red scarf", "Green hat", "Wool socks"];

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serializes")
}

impl Workload {
    pub fn new(config: &LoadConfig, run_id: &str) -> Self {
        Self {
            token_field: format!(r#"{{"auth_token":{},"#, json_string(&config.token)),
            batch: config.batch.max(1),
            event_fields: config
                .event_names
                .iter()
                .map(|name| format!(r#""event_name":{}"#, json_string(name)))
                .collect(),
            run_json: json_string(run_id),
            users: config.users.max(1),
            sizes: if config.payload_bytes.is_empty() { vec![300] } else { config.payload_bytes.clone() },
            message_ids: config.message_ids,
        }
    }

    /// The body of request `seq`, appended to `out` (cleared first): one track event
    /// with the token, or with `--batch` an `events/batch` body of events numbered
    /// `seq * batch ..`.
    pub fn body(&self, seq: u64, rng: &mut impl Rng, out: &mut Vec<u8>) {
        out.clear();
        if self.batch == 1 {
            out.extend_from_slice(self.token_field.as_bytes());
            self.event(seq, rng, out, 0);
            return;
        }
        out.extend_from_slice(self.token_field.as_bytes());
        out.extend_from_slice(br#""events":["#);
        for i in 0..self.batch as u64 {
            if i > 0 {
                out.push(b',');
            }
            let start = out.len();
            out.push(b'{');
            self.event(seq * self.batch as u64 + i, rng, out, start);
        }
        out.extend_from_slice(b"]}");
    }

    /// The fields of event `seq` after its opening `{`, appended to `out`, padded so
    /// that what begins at `start` has one of the configured sizes.
    fn event(&self, seq: u64, rng: &mut impl Rng, out: &mut Vec<u8>, start: usize) {
        use std::io::Write;
        let user = rng.random_range(0..self.users);
        let event = &self.event_fields[rng.random_range(0..self.event_fields.len())];
        let target = self.sizes[rng.random_range(0..self.sizes.len())];
        let item = ITEMS[(seq % ITEMS.len() as u64) as usize];
        let cents = rng.random_range(100..20_000u32);
        // Writing to a Vec cannot fail.
        let _ = write!(
            out,
            r#""identity":{{"id":"user-{user}","email":"user-{user}@loadgen.example","plan":"pro"}},{event},"data":{{"loadgen_run":{},"loadgen_seq":{seq},"item":"{item}","price":{}.{:02},"quantity":{},"note":""#,
            self.run_json,
            cents / 100,
            cents % 100,
            1 + seq % 3,
        );
        const TAIL: &[u8] = br#""},"extras":{"source":"vero-loadgen"}}"#;
        // `<run>-<seq>` as a JSON string: the run id is already escaped and quoted.
        let message_id = if self.message_ids {
            format!(r#","message_id":{}-{seq}""#, &self.run_json[..self.run_json.len() - 1])
        } else {
            String::new()
        };
        let tail_len = TAIL.len() + message_id.len();
        let pad = target.saturating_sub(out.len() - start + tail_len);
        out.resize(out.len() + pad, b'x');
        out.extend_from_slice(&TAIL[..TAIL.len() - 2]);
        out.extend_from_slice(message_id.as_bytes());
        out.extend_from_slice(b"}}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn bodies_are_valid_track_requests_of_the_requested_size() {
        let mut config = LoadConfig::for_url("http://127.0.0.1:1/api/v2/events/track");
        config.token = "to\"ken".into();
        config.payload_bytes = vec![700];
        config.event_names = vec!["signed_up".into()];
        let workload = Workload::new(&config, "run-1");
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut body = Vec::new();
        workload.body(42, &mut rng, &mut body);
        assert_eq!(body.len(), 700);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["auth_token"], "to\"ken");
        assert_eq!(json["event_name"], "signed_up");
        assert!(json["identity"]["id"].as_str().unwrap().starts_with("user-"));
        assert_eq!(json["data"]["loadgen_run"], "run-1");
        assert_eq!(json["data"]["loadgen_seq"], 42);
        assert!(json["data"]["price"].is_f64());
        assert_eq!(json["extras"]["source"], "vero-loadgen");
        assert!(json["extras"].get("message_id").is_none());
    }

    #[test]
    fn message_ids_are_unique_per_request_and_keep_the_size() {
        let mut config = LoadConfig::for_url("http://127.0.0.1:1/");
        config.payload_bytes = vec![600];
        config.message_ids = true;
        let workload = Workload::new(&config, "run-\"7");
        let mut body = Vec::new();
        workload.body(42, &mut rand::rng(), &mut body);
        assert_eq!(body.len(), 600);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["extras"]["message_id"], "run-\"7-42");
        assert_eq!(json["extras"]["source"], "vero-loadgen");
    }

    #[test]
    fn batches_hold_numbered_events_of_the_requested_size() {
        let mut config = LoadConfig::for_url("http://127.0.0.1:1/api/v2/events/batch");
        config.payload_bytes = vec![500];
        config.batch = 3;
        let workload = Workload::new(&config, "run-b");
        let mut body = Vec::new();
        workload.body(5, &mut rand::rng(), &mut body);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["auth_token"], "your_auth_token");
        let events = json["events"].as_array().unwrap();
        let seqs: Vec<_> = events.iter().map(|e| e["data"]["loadgen_seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [15, 16, 17]);
        assert!(events.iter().all(|e| e.get("auth_token").is_none()));
        let overhead = r#"{"auth_token":"your_auth_token","events":[,,]}"#.len();
        assert_eq!(body.len(), overhead + 3 * 500, "each event has the requested size");
    }

    #[test]
    fn a_size_smaller_than_the_fields_gives_an_unpadded_valid_body() {
        let mut config = LoadConfig::for_url("http://127.0.0.1:1/");
        config.payload_bytes = vec![10];
        let workload = Workload::new(&config, "r");
        let mut body = Vec::new();
        workload.body(1, &mut rand::rng(), &mut body);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["data"]["note"], "");
    }
}
