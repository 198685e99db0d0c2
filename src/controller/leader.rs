//! Leader election through a coordination.k8s.io Lease: only the leader writes. A standby
//! waits for the lease; the leader that loses it exits at once, so it cannot write after a
//! successor has started.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// Seconds a lease stays valid after its last renewal.
    pub duration_seconds: u64,
}

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
#[error("leader election on Lease {namespace}/{name}: {source}")]
pub struct LeaseError {
    namespace: String,
    name: String,
    #[source]
    source: kube_lease_manager::LeaseManagerError,
}

/// The held lease: a future that resolves if it is lost, and the handle that releases it.
#[derive(Debug)]
pub struct Leadership {
    manager: Arc<LeaseManager>,
    lost: oneshot::Receiver<()>,
    renewals: tokio::task::JoinHandle<()>,
}

/// Gives the lease up on shutdown.
#[derive(Debug)]
pub struct HeldLease {
    manager: Arc<LeaseManager>,
    renewals: tokio::task::JoinHandle<()>,
}

/// How often a standby looks at the lease: a released lease is taken within this time.
const STANDBY_POLL: Duration = Duration::from_secs(1);

/// Waits until this process holds the lease.
pub async fn acquire(client: Client, settings: &LeaseSettings) -> Result<Leadership, LeaseError> {
    let wrap = |source| LeaseError {
        namespace: settings.namespace.clone(),
        name: settings.name.clone(),
        source,
    };
    // Renew a third of the duration before expiry, so a slow API server does not cost the lease.
    let grace = (settings.duration_seconds / 3).max(1);
    info!(lease = %settings.name, identity = %settings.identity, "waiting for the leader lease");
    let manager = loop {
        // A fresh manager reads the Lease from the API server; a long-lived one would trust
        // its cached expiry and sleep through a released lease (a graceful hand-over).
        let manager = LeaseManagerBuilder::new(client.clone(), settings.name.clone())
            .with_namespace(settings.namespace.clone())
            .with_identity(settings.identity.clone())
            .with_duration(settings.duration_seconds)
            .with_grace(grace)
            .build()
            .await
            .map_err(wrap)?;
        match tokio::time::timeout(STANDBY_POLL, manager.changed()).await {
            Ok(Ok(true)) => break Arc::new(manager),
            Ok(Ok(false)) => debug!("lease held by another replica"),
            Ok(Err(error)) => {
                warn!(%error, "leader election failed; retrying");
                tokio::time::sleep(STANDBY_POLL).await;
            }
            Err(_) => {}
        }
    };
    info!(identity = %settings.identity, "acquired the leader lease");
    let (lost_tx, lost) = oneshot::channel();
    let renewing = manager.clone();
    let renewals = tokio::spawn(async move {
        // Keeps renewing; returns only when the lease is no longer ours (or renewal fails).
        loop {
            match renewing.changed().await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(error) => {
                    warn!(%error, "cannot renew the leader lease");
                    break;
                }
            }
        }
        let _ = lost_tx.send(());
    });
    Ok(Leadership {
        manager,
        lost,
        renewals,
    })
}

impl Leadership {
    /// Splits into the loss signal and the handle that releases the lease.
    pub fn split(self) -> (oneshot::Receiver<()>, HeldLease) {
        (
            self.lost,
            HeldLease {
                manager: self.manager,
                renewals: self.renewals,
            },
        )
    }
}

impl HeldLease {
    /// Gives the lease up so a standby takes over at once.
    pub async fn release(self) {
        self.renewals.abort();
        match self.manager.release().await {
            Ok(()) => info!("released the leader lease"),
            Err(error) => {
                warn!(%error, "could not release the leader lease; it expires on its own")
            }
        }
    }
}
