//! The test kit's Apache Kafka against itself: a node starts, serves, keeps what it
//! acknowledged across a `kill -9`; three nodes replicate and fail over when the
//! leader of a partition is killed. Start times are printed (`--nocapture`).

use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use vero_testkit::kafka::KafkaCluster;
use vero_testkit::{kafka_probe, unique_name};

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer")
}

async fn send_numbered(producer: &FutureProducer, topic: &str, range: std::ops::Range<u32>) {
    for n in range {
        let payload = n.to_string();
        producer
            .send(FutureRecord::to(topic).key(&payload).payload(&payload), Duration::from_secs(60))
            .await
            .unwrap_or_else(|(e, _)| panic!("record {n} not acknowledged: {e}"));
    }
}

fn numbers(records: &[kafka_probe::LandedRecord]) -> Vec<u32> {
    let mut numbers: Vec<u32> = records
        .iter()
        .map(|r| String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default()).parse().expect("a number"))
        .collect();
    numbers.sort_unstable();
    numbers
}

#[tokio::test(flavor = "multi_thread")]
async fn one_node_keeps_acknowledged_records_across_a_kill() {
    let started = Instant::now();
    let mut kafka = tokio::task::block_in_place(KafkaCluster::single).expect("Kafka starts (make deps installs it)");
    eprintln!("one node started in {:?}", started.elapsed());
    let topic = unique_name("kit_single");
    kafka.create_topic(&topic, 3).await.unwrap();
    send_numbered(&producer(kafka.bootstrap_servers()), &topic, 0..50).await;

    tokio::task::block_in_place(|| {
        kafka.kill(1);
        let restarted = Instant::now();
        kafka.restart(1).expect("restart");
        eprintln!("one node restarted in {:?}", restarted.elapsed());
    });
    send_numbered(&producer(kafka.bootstrap_servers()), &topic, 50..60).await;
    let records = tokio::task::block_in_place(|| {
        kafka_probe::read_topic(kafka.bootstrap_servers(), &topic, 60, Duration::from_secs(60))
    })
    .unwrap();
    assert_eq!(numbers(&records), (0..60).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_fail_over_when_a_leader_is_killed() {
    let started = Instant::now();
    let mut kafka = tokio::task::block_in_place(KafkaCluster::three).expect("three Kafka nodes start");
    eprintln!("three nodes started in {:?}", started.elapsed());
    assert!(kafka.active_controller().is_some(), "one node leads the KRaft quorum");
    let topic = unique_name("kit_three");
    kafka.create_topic(&topic, 1).await.unwrap();
    let producer = producer(kafka.bootstrap_servers());
    send_numbered(&producer, &topic, 0..20).await;

    let leader = kafka.leader_of(&topic, 0).unwrap();
    tokio::task::block_in_place(|| kafka.kill(leader));
    // acks=all with min.insync.replicas=2: the two others take over and keep accepting.
    send_numbered(&producer, &topic, 20..40).await;
    let new_leader = kafka.leader_of(&topic, 0).unwrap();
    assert_ne!(new_leader, leader, "leadership moved off the killed node");
    tokio::task::block_in_place(|| kafka.restart(leader)).unwrap();
    let records = tokio::task::block_in_place(|| {
        kafka_probe::read_topic(kafka.bootstrap_servers(), &topic, 40, Duration::from_secs(60))
    })
    .unwrap();
    assert_eq!(numbers(&records), (0..40).collect::<Vec<_>>());
}
