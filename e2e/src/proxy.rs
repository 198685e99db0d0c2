//! A loopback TCP proxy in front of the API server that can stop forwarding: a network
//! partition between one operator process and the API server (fault scenario 11).
//!
//! While stalled it keeps accepting and reading what the client sends (the client's writes
//! are acknowledged, so its requests hang waiting for an answer, as they do when packets
//! are dropped) but forwards nothing either way. When the partition heals, the bytes held
//! for connections whose client is still there go on to the API server; a connection its
//! client closed meanwhile is dropped with what it held, as a dead peer's packets never
//! arrive.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Whether the proxy forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    Stalled,
}

/// The proxy; stops (and drops every connection) when dropped.
#[derive(Debug)]
pub struct StallingProxy {
    pub address: SocketAddr,
    mode: watch::Sender<Mode>,
    accepting: JoinHandle<()>,
}

impl StallingProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let (mode, watching) = watch::channel(Mode::Forward);
        let accepting = tokio::spawn(async move {
            // Owned here, so aborting the accept loop drops every connection too.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { continue };
                        connections.spawn(relay(client, upstream, watching.clone()));
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Self {
            address,
            mode,
            accepting,
        }
    }

    /// Stops forwarding, on open connections and new ones.
    pub fn stall(&self) {
        self.mode.send_replace(Mode::Stalled);
    }

    /// Forwards again (see the module comment for what held bytes become).
    pub fn heal(&self) {
        self.mode.send_replace(Mode::Forward);
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// Relays one connection; returns when either side is done (or the client left while the
/// proxy was stalled).
async fn relay(mut client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let mut held: Vec<u8> = Vec::new();
    let mut server: Option<TcpStream> = None;
    let mut client_done = false;
    let mut from_client = vec![0_u8; 64 * 1024];
    let mut from_server = vec![0_u8; 64 * 1024];
    loop {
        let forwarding = *mode.borrow_and_update() == Mode::Forward;
        if forwarding {
            if server.is_none() {
                let Ok(connected) = TcpStream::connect(upstream).await else {
                    return;
                };
                server = Some(connected);
            }
            let Some(up) = server.as_mut() else { return };
            if !held.is_empty() {
                if up.write_all(&held).await.is_err() {
                    return;
                }
                held.clear();
            }
        }
        tokio::select! {
            read = client.read(&mut from_client), if !client_done => match read {
                Ok(0) | Err(_) => {
                    let Some(up) = server.as_mut().filter(|_| forwarding) else {
                        // The client left during the partition: what it sent is lost.
                        return;
                    };
                    let _ = up.shutdown().await;
                    client_done = true;
                }
                Ok(n) => match server.as_mut().filter(|_| forwarding) {
                    Some(up) => {
                        if up.write_all(&from_client[..n]).await.is_err() {
                            return;
                        }
                    }
                    None => held.extend_from_slice(&from_client[..n]),
                },
            },
            read = async {
                match server.as_mut() {
                    Some(up) => up.read(&mut from_server).await,
                    None => std::future::pending().await,
                }
            }, if forwarding => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if client.write_all(&from_server[..n]).await.is_err() {
                        return;
                    }
                }
            },
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
