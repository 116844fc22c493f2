//! Criterion microbenchmarks, each next to its baseline (the suite reports ratios):
//! * `gateway_parse_validate` (the gateway's own body parsing, token extraction and
//!   validation into a `TrackEvent`) vs `baseline_parse_and_check` (serde into a
//!   typed struct with the same first checks: the trivial server's work);
//! * `avro_encode_event` (the gateway's record encoding) vs `json_encode_event` (the
//!   same record as one JSON object with serde_json).
use criterion::{criterion_group, criterion_main, Criterion};
use ingest_gateway::fields::{self, BodyFormat};
use ingest_gateway::stamp::Stamp;
use ingest_gateway::track::{build_event, OBJECT_FIELDS};

fn body() -> Vec<u8> {
    let config = vero_loadgen::LoadConfig::for_url("http://127.0.0.1:1/");
    let workload = vero_loadgen::workload::Workload::new(&config, "bench");
    let mut body = Vec::new();
    workload.body(1, &mut rand::rng(), &mut body);
    body
}

fn parse(c: &mut Criterion) {
    let body = body();
    c.bench_function("baseline_parse_and_check", |b| {
        b.iter(|| vero_bench::trivial_server::parse_and_check(std::hint::black_box(&body), "your_auth_token").is_ok())
    });
    c.bench_function("gateway_parse_validate", |b| {
        b.iter(|| {
            let mut fields = fields::parse(BodyFormat::Json, std::hint::black_box(&body), OBJECT_FIELDS).unwrap();
            let token = fields::take_token(&mut fields, None);
            let stamp = Stamp { project: "local", received_at: 1_764_000_000_000, user_agent: Some("bench") };
            (token, build_event(fields, stamp).is_ok())
        })
    });
}

fn encode(c: &mut Criterion) {
    let event = vero_bench::records::track_events(1, "bench").remove(0);
    // vero-model's direct track event writer (what the gateway produces with).
    c.bench_function("avro_encode_event", |b| b.iter(|| vero_model::encode_event(std::hint::black_box(&event))));
    c.bench_function("json_encode_event", |b| {
        b.iter(|| vero_bench::records::json_each_row(std::hint::black_box(&event), 0, 0))
    });
}

/// What the consumers pay per message: Avro decode of a current-version record.
fn decode(c: &mut Criterion) {
    let event = vero_bench::records::track_events(1, "bench").remove(0);
    let bytes = vero_model::encode_event(&event);
    c.bench_function("avro_decode_event", |b| b.iter(|| vero_model::decode_record(std::hint::black_box(&bytes))));
}

criterion_group!(benches, parse, encode, decode);
criterion_main!(benches);
