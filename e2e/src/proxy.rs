//! A loopback TCP proxy in front of the API server that can stop forwarding: a network
//! partition between one operator process and the API server (fault scenarios 13 and 15).
//!
//! While stalled it keeps accepting and reading what either side sends (the client's
//! writes are acknowledged, so its requests hang waiting for an answer, as they do when
//! packets are dropped) but forwards nothing. When the partition heals, the bytes held for
//! connections whose client is still there go on to their destination; a connection its
//! client closed meanwhile is dropped with what it held, as a dead peer's packets never
//! arrive.
//!
//! During a stall the proxy can also cut the one connection that received the most from
//! the API server (what it held is lost): with every other connection idle, that is the
//! watch whose kind changed, so one watch of the operator is broken and the others not.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// What every connection is told to do.
#[derive(Debug, Clone, Default)]
struct Control {
    stalled: bool,
    /// Connections to drop now.
    cut: HashSet<u64>,
}

/// Bytes each connection received from the API server since the stall began.
type ReceivedWhileStalled = Arc<Mutex<HashMap<u64, usize>>>;

/// The proxy; stops (and drops every connection) when dropped.
#[derive(Debug)]
pub struct StallingProxy {
    pub address: SocketAddr,
    control: watch::Sender<Control>,
    received_while_stalled: ReceivedWhileStalled,
    accepting: JoinHandle<()>,
}

impl StallingProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let (control, watching) = watch::channel(Control::default());
        let received_while_stalled = ReceivedWhileStalled::default();
        let received = received_while_stalled.clone();
        let accepting = tokio::spawn(async move {
            // Owned here, so aborting the accept loop drops every connection too.
            let mut connections = JoinSet::new();
            let mut next_id = 0_u64;
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { continue };
                        next_id += 1;
                        connections.spawn(relay(Relay {
                            id: next_id,
                            client,
                            upstream,
                            control: watching.clone(),
                            received: received.clone(),
                        }));
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Self {
            address,
            control,
            received_while_stalled,
            accepting,
        }
    }

    /// Stops forwarding, on open connections and new ones.
    pub fn stall(&self) {
        self.received_while_stalled
            .lock()
            .expect("proxy counters")
            .clear();
        self.control.send_modify(|control| control.stalled = true);
    }

    /// Forwards again (see the module comment for what held bytes become).
    pub fn heal(&self) {
        self.control.send_modify(|control| control.stalled = false);
    }

    /// Bytes every connection together received from the API server since the stall began.
    pub fn received_while_stalled(&self) -> usize {
        self.received_while_stalled
            .lock()
            .expect("proxy counters")
            .values()
            .sum()
    }

    /// Stalls once nothing arrives for `quiet`: a stall that received nothing in that time
    /// is kept, one that did is healed and tried again, until `timeout`. Returns whether a
    /// quiet stall was reached (the proxy is then stalled).
    pub async fn stall_when_quiet(&self, quiet: Duration, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            self.stall();
            tokio::time::sleep(quiet).await;
            if self.received_while_stalled() == 0 {
                return true;
            }
            self.heal();
            tokio::time::sleep(quiet).await;
        }
        false
    }

    /// While stalled: drops the connection that received the most bytes from the API server
    /// since the stall began, with what it held; returns that many bytes (0: none received
    /// anything, nothing is cut).
    pub async fn cut_busiest(&self) -> usize {
        // Let what the API server sent reach the relays first.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let busiest = self
            .received_while_stalled
            .lock()
            .expect("proxy counters")
            .iter()
            .max_by_key(|(_, bytes)| **bytes)
            .map(|(id, bytes)| (*id, *bytes));
        let Some((id, bytes)) = busiest else {
            return 0;
        };
        self.control.send_modify(|control| {
            control.cut.insert(id);
        });
        bytes
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

struct Relay {
    id: u64,
    client: TcpStream,
    upstream: SocketAddr,
    control: watch::Receiver<Control>,
    received: ReceivedWhileStalled,
}

/// Relays one connection; returns when either side is done, when the client left while
/// the proxy was stalled, or when the connection is cut.
async fn relay(relay: Relay) {
    let Relay {
        id,
        mut client,
        upstream,
        mut control,
        received,
    } = relay;
    let mut held_for_server: Vec<u8> = Vec::new();
    let mut held_for_client: Vec<u8> = Vec::new();
    let mut server: Option<TcpStream> = None;
    let mut client_done = false;
    let mut server_done = false;
    let mut from_client = vec![0_u8; 64 * 1024];
    let mut from_server = vec![0_u8; 64 * 1024];
    loop {
        let (forwarding, cut) = {
            let control = control.borrow_and_update();
            (!control.stalled, control.cut.contains(&id))
        };
        if cut {
            return;
        }
        if forwarding {
            if server.is_none() {
                let Ok(connected) = TcpStream::connect(upstream).await else {
                    return;
                };
                server = Some(connected);
            }
            let Some(up) = server.as_mut() else { return };
            if !held_for_server.is_empty() {
                if up.write_all(&held_for_server).await.is_err() {
                    return;
                }
                held_for_server.clear();
            }
            if !held_for_client.is_empty() {
                if client.write_all(&held_for_client).await.is_err() {
                    return;
                }
                held_for_client.clear();
            }
            if server_done {
                return;
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
                    None => held_for_server.extend_from_slice(&from_client[..n]),
                },
            },
            read = async {
                match server.as_mut() {
                    Some(up) => up.read(&mut from_server).await,
                    None => std::future::pending().await,
                }
            }, if !server_done => match read {
                Ok(0) | Err(_) if forwarding => return,
                Ok(0) | Err(_) => server_done = true,
                Ok(n) if forwarding => {
                    if client.write_all(&from_server[..n]).await.is_err() {
                        return;
                    }
                }
                Ok(n) => {
                    held_for_client.extend_from_slice(&from_server[..n]);
                    *received
                        .lock()
                        .expect("proxy counters")
                        .entry(id)
                        .or_default() += n;
                }
            },
            changed = control.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
