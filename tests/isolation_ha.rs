//! `maxNamespaces` with two manager replicas serving the webhook: the apiserver reaches
//! them through a round-robin TCP proxy (as a Service spreads connections over its
//! endpoints), one of them leads and creates namespaces, and anchors race as the owner.
//! The limit must hold, and keep holding after the leader stops and the other takes over.

mod common;

use std::time::Duration;

use common::eventually;
use common::managers::{holder, proxy_connections, setup_two_replicas, stop_manager};
use common::tenants::race_anchors_into_tenants;

fn setup() {
    setup_two_replicas();
}

#[test]
fn max_namespaces_holds_with_two_replicas_and_across_a_handover() {
    setup();
    let first = eventually("a leader", Duration::from_secs(30), holder);
    race_anchors_into_tenants("ha-race");

    // The leader stops; the other replica takes over and is the authority now.
    stop_manager(&first);
    eventually("the other replica to lead", Duration::from_secs(30), || {
        holder().filter(|h| *h != first)
    });
    race_anchors_into_tenants("ha-after");
    eprintln!("webhook connections per replica: {:?}", proxy_connections());
}
