//! A TCP proxy on loopback whose link can be cut, to separate one component from
//! another while everything else stays reachable (e.g. the event sinks from
//! ClickHouse, with the broker still up).
//!
//! Modes:
//! * [`LinkState::Open`]: bytes flow both ways.
//! * [`LinkState::Blackhole`]: every live connection stops moving bytes and new ones
//!   are accepted but never forwarded: what a dead route or a dropped-packets
//!   firewall looks like to the client (it learns only from its own timeouts).
//! * [`LinkState::Refuse`]: live connections are closed and new ones closed at once.
//!
//! Going back to `Open` closes the connections held during a blackhole (a real link
//! that comes back does not resurrect a TCP stream the client already gave up on).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Open,
    Blackhole,
    Refuse,
}

/// Handle to a running proxy; dropping it stops the proxy and closes its connections.
pub struct Proxy {
    addr: SocketAddr,
    state: watch::Sender<LinkState>,
    stop: CancellationToken,
}

impl Proxy {
    /// Listen on a free loopback port and forward to `upstream`.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (state, watcher) = watch::channel(LinkState::Open);
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, upstream, Arc::new(watcher), stop.clone()));
        Ok(Self { addr, state, stop })
    }

    /// The address clients connect to instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set(&self, state: LinkState) {
        self.state.send_replace(state);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    state: Arc<watch::Receiver<LinkState>>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((client, _)) = accepted else { continue };
        let mut watcher = (*state).clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let initial = *watcher.borrow_and_update();
            match initial {
                LinkState::Refuse => drop(client),
                // Held open, silent, until the link changes; then closed.
                LinkState::Blackhole => {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = watcher.changed() => {}
                    }
                }
                LinkState::Open => forward(client, upstream, watcher, stop).await,
            }
        });
    }
}

/// Copy both ways until either side closes or the link state changes away from
/// `Open` (then the connection is held silent for a blackhole, or closed).
async fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut watcher: watch::Receiver<LinkState>,
    stop: CancellationToken,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        let _ = client.shutdown().await;
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = async {
            loop {
                if watcher.changed().await.is_err() { return; }
                match *watcher.borrow() {
                    LinkState::Open => continue,
                    LinkState::Refuse => return,
                    LinkState::Blackhole => break,
                }
            }
            // Blackhole: stop copying, keep both sockets open and silent until the
            // link changes again.
            let _ = watcher.changed().await;
        } => {}
    }
}
