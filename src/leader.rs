//! Leader election on a `coordination.k8s.io` Lease: every replica serves webhooks, only
//! the leader runs the controllers.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::{info, warn};

/// Arguments of `canopy manager` for leader election.
#[derive(Clone, Debug, clap::Args)]
pub struct LeaderElectionArgs {
    /// Run the controllers only while holding the Lease (off: always run them).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the Lease.
    #[arg(long, default_value = "canopy-system", env = "POD_NAMESPACE")]
    pub leader_election_namespace: String,
    /// Name of the Lease.
    #[arg(long, default_value = "canopy-manager")]
    pub leader_election_id: String,
    /// This replica's name in the Lease (default: `$POD_NAME` plus a random suffix).
    #[arg(long)]
    pub leader_election_identity: Option<String>,
    /// Seconds a leader's claim lasts without renewal.
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,
}

impl Default for LeaderElectionArgs {
    fn default() -> Self {
        Self {
            leader_elect: true,
            leader_election_namespace: "canopy-system".to_owned(),
            leader_election_id: "canopy-manager".to_owned(),
            leader_election_identity: None,
            lease_duration_seconds: 15,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("cannot take part in leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    /// The process must stop: another replica may already be writing.
    #[error("lost the leader Lease; stopping so that a single replica writes")]
    Lost,
}

/// Campaigns for the Lease and publishes leadership on `leader` until `shutdown`, when it
/// releases the Lease so another replica takes over at once instead of after it expires.
pub async fn campaign(
    client: Client,
    args: &LeaderElectionArgs,
    leader: watch::Sender<bool>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LeaderError> {
    let identity = args.leader_election_identity.clone().unwrap_or_else(|| {
        format!(
            "{}-{:08x}",
            std::env::var("POD_NAME").unwrap_or_else(|_| "canopy".to_owned()),
            rand_suffix()
        )
    });
    let duration = args.lease_duration_seconds.max(3);
    let manager = LeaseManagerBuilder::new(client, &args.leader_election_id)
        .with_namespace(&args.leader_election_namespace)
        .with_identity(&identity)
        .with_duration(duration)
        .with_grace((duration / 3).max(1))
        .with_field_manager(crate::api::keys::FIELD_MANAGER)
        .build()
        .await?;
    info!(%identity, lease = %args.leader_election_id, "campaigning for leadership");
    let (mut state, task) = manager.watch().await;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut was_leader = false;
    let outcome = loop {
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() {
                    break Err(LeaderError::Lost);
                }
                let now = *state.borrow_and_update();
                if now && !was_leader {
                    info!(%identity, "became the leader");
                    was_leader = true;
                    let _ = leader.send(true);
                } else if !now && was_leader {
                    warn!(%identity, "lost the leader Lease");
                    break Err(LeaderError::Lost);
                }
            }
            () = &mut shutdown => break Ok(()),
        }
    };
    let _ = leader.send(false);
    // Closing the channel makes the task release the Lease.
    drop(state);
    if tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .is_err()
    {
        warn!("the Lease was not released in time; another replica takes over when it expires");
    }
    outcome
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish() as u32
}
