//! Writing a batch's effects, in an order that keeps every step safe to repeat:
//! 1. handoffs and dead letters to Kafka (a repeated handoff is recognised by the
//!    receiver through `merged_from`);
//! 2. profile rows, alias rows and erasures to ClickHouse (rows collapse by version);
//! 3. the profiles' final values, or tombstones, to the profiles topic.
//!
//! Retryable and operator-fixable failures (see [`WriteError`]) repeat the whole
//! sequence with backoff until it succeeds or the service stops; a rejected write stops
//! the service. Offsets are stored by the caller
//! only after this returned `Ok`.

use std::time::Instant;

use clickhouse::Client;
use tokio_util::sync::CancellationToken;

use crate::config::RetrySettings;
use crate::error::WriteError;
use crate::kafka::producer::{Outgoing, Producer};
use crate::metrics::Metrics;
use crate::profile::ProfileState;
use crate::service::apply::{Effects, Profiles, Topics};
use crate::store::clickhouse::{self as store, ProfileRow};
use vero_service::health::Health;

/// Why a batch was not written.
#[derive(Debug, thiserror::Error)]
pub enum NotWritten {
    #[error("shutdown while retrying")]
    Shutdown,
    #[error(transparent)]
    Rejected(WriteError),
}

pub struct Writer {
    pub clickhouse: Client,
    pub producer: Producer,
    pub topics: Topics,
    pub retry: RetrySettings,
    pub metrics: Metrics,
    pub health: Health,
}

impl Writer {
    pub async fn write(
        &self,
        effects: &Effects,
        profiles: &Profiles,
        cancel: &CancellationToken,
    ) -> Result<(), NotWritten> {
        if effects.is_empty() {
            return Ok(());
        }
        let (rows, records) = self.render(effects, profiles);
        let mut backoff = self.retry.backoff();
        loop {
            let started = Instant::now();
            match self.attempt(effects, &rows, &records).await {
                Ok(()) => {
                    self.metrics.write_seconds.observe(started.elapsed().as_secs_f64());
                    self.metrics.profiles_written.inc_by(rows.len() as u64);
                    self.metrics.needs_operator.set(0);
                    self.health.ready();
                    return Ok(());
                }
                Err(e) => {
                    self.metrics.write_failures.with_label_values(&[e.class()]).inc();
                    match &e {
                        WriteError::Rejected(_) => {
                            self.health.not_ready(e.to_string());
                            return Err(NotWritten::Rejected(e));
                        }
                        WriteError::NeedsOperator(_) => {
                            tracing::error!(error = %e, "writing profiles refused until an operator acts, retrying");
                            self.metrics.needs_operator.set(1);
                            self.health.not_ready(format!("operator action needed: {e}"));
                        }
                        WriteError::Unavailable(_) => {
                            tracing::warn!(error = %e, "writing profiles failed, retrying");
                            self.health.not_ready(e.to_string());
                        }
                    }
                    self.metrics.write_retries.inc();
                    if !backoff.wait(cancel).await {
                        return Err(NotWritten::Shutdown);
                    }
                }
            }
        }
    }

    async fn attempt(&self, effects: &Effects, rows: &[ProfileRow], records: &[Outgoing]) -> Result<(), WriteError> {
        self.producer.send_all(&effects.messages).await?;
        store::insert_profiles(&self.clickhouse, rows).await?;
        store::insert_aliases(&self.clickhouse, &effects.aliases).await?;
        store::erase(&self.clickhouse, &effects.erasures).await?;
        self.producer.send_all(records).await
    }

    /// ClickHouse rows and profiles-topic records of every touched profile.
    fn render(&self, effects: &Effects, profiles: &Profiles) -> (Vec<ProfileRow>, Vec<Outgoing>) {
        let mut rows = Vec::with_capacity(effects.touched.len());
        let mut records = Vec::with_capacity(effects.touched.len());
        for (partition, key) in &effects.touched {
            let current: Option<&ProfileState> = profiles.get(*partition, key);
            if let Some(&version) = effects.deleted_versions.get(key) {
                // Erased in this batch: the marker row first, a re-created profile (with
                // a higher version) after it.
                rows.push(ProfileRow::deleted(key, version));
            }
            if let Some(profile) = current {
                rows.push(ProfileRow::live(profile));
            }
            records.push(Outgoing {
                topic: self.topics.profiles.clone(),
                partition: Some(*partition),
                key: key.kafka_key(),
                payload: current.map(|p| vero_model::encode(&p.to_record())),
                headers: None,
            });
        }
        (rows, records)
    }
}
