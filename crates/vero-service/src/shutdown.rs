//! Shutdown: a [`CancellationToken`] cancelled on the first SIGINT or SIGTERM. Services
//! take the token in `run(...)`, so tests shut them down by cancelling it.
//!
//! [`signal_bounded`] also bounds the stop: a process that has not exited
//! [`STOP_DEADLINE`] after the signal exits anyway. A Kafka client's close can wait
//! without limit for a broker that does not answer (`rd_kafka_consumer_close` was
//! seen hanging for minutes with the broker gone), and the supervisor, Kubernetes or
//! `make run` must be able to count on the stop. Exiting there loses nothing: offsets
//! are stored only after their side effect, so what was not committed is read again
//! and dropped as a duplicate; a gateway request without its ack never got its 200.

pub use tokio_util::sync::CancellationToken;

/// How long a service may take to stop after SIGINT/SIGTERM: above the gateway's
/// drain (`http.shutdown_grace_ms`, 15 s) and the sink's last flush
/// (`retry.shutdown_flush_timeout_ms`, 10 s), below `make run`'s and the Kubernetes
/// manifests' grace (30 s).
pub const STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(25);

/// [`signal`], and once it fired, exit the process with status 2 if it is still
/// running `deadline` later, whatever it is waiting for.
pub fn signal_bounded(deadline: std::time::Duration) -> CancellationToken {
    let token = signal();
    let fired = token.clone();
    tokio::spawn(async move {
        fired.cancelled().await;
        // A thread, not a task: the runtime itself may be what hangs (a blocking drop).
        std::thread::spawn(move || {
            std::thread::sleep(deadline);
            tracing::error!(
                ?deadline,
                "still running this long after the stop signal (a Kafka or ClickHouse client \
                 waiting on a peer that does not answer): exiting now; uncommitted offsets are read again"
            );
            std::process::exit(2);
        });
    });
    token
}

/// A token that is cancelled when the process receives SIGINT or SIGTERM.
pub fn signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        }
        cancel.cancel();
    });
    token
}
