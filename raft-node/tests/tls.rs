//! Mutual TLS on a node's gRPC port, seen from outside: who gets an answer
//! and who does not. A plaintext caller, a TLS caller without a certificate
//! and one with a certificate from another CA get no RPC answered; a client
//! certificate reads and writes but may not change membership, take
//! snapshots or speak Raft; a node whose certificate is missing refuses to
//! start naming the file.

mod common;

use std::time::Duration;

use cluster_tls::TlsIdentity;
use common::*;
use proto::booking as pb;
use proto::booking::booking_client::BookingClient;
use proto::raft as pr;
use proto::raft::raft_client::RaftClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Bound on one call of these tests: a refused handshake fails at once.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

fn channel(addr: &str, tls: Option<ClientTlsConfig>) -> Channel {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .unwrap()
        .connect_timeout(CALL_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).unwrap();
    }
    endpoint.connect_lazy()
}

async fn status(channel: Channel) -> Result<pb::StatusResponse, tonic::Status> {
    BookingClient::new(channel)
        .status(pb::StatusRequest {})
        .await
        .map(|r| r.into_inner())
}

/// The cluster's CA, as a client's trust root.
fn ca_only(c: &Cluster) -> ClientTlsConfig {
    let pem = std::fs::read(c.config.tls_files().ca_cert).unwrap();
    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
}

fn identity(c: &Cluster, which: TlsIdentity) -> ClientTlsConfig {
    c.client_tls(which)
        .expect("TLS is on in test clusters")
        .tonic_config()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_certificates_from_the_cluster_ca_get_an_answer() {
    // Goal: no RPC is answered without a client certificate from the
    // cluster's CA; with one, the same call is answered.
    let _serial = serial().await;
    let c = Cluster::start_all("tls-refuse", 1, raft_section()).await;
    let addr = c.addr(1).to_string();

    // With the cluster's client certificate: answered (the control).
    let ok = status(channel(&addr, Some(identity(&c, TlsIdentity::Client)))).await;
    assert_eq!(ok.expect("a client certificate is answered").node_id, 1);

    // Plaintext: the TLS listener never gets an HTTP/2 request out of it.
    let plain = status(channel(&addr, None)).await;
    assert!(plain.is_err(), "plaintext was answered: {plain:?}");

    // TLS that trusts the node but presents no certificate.
    let anonymous = status(channel(&addr, Some(ca_only(&c)))).await;
    assert!(
        anonymous.is_err(),
        "a caller without a certificate was answered: {anonymous:?}"
    );

    // A certificate from another CA (a second cluster's client certificate),
    // presented to a caller that does trust our node.
    let other = Cluster::new("tls-other-ca", 1, raft_section());
    let other_files = other.config.tls_files();
    let stranger_tls = ca_only(&c).identity(tonic::transport::Identity::from_pem(
        std::fs::read(&other_files.admin_cert).unwrap(),
        std::fs::read(&other_files.admin_key).unwrap(),
    ));
    let foreign = status(channel(&addr, Some(stranger_tls))).await;
    assert!(
        foreign.is_err(),
        "a certificate from another CA was answered: {foreign:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_certificate_cannot_administer_or_speak_raft() {
    // Goal: membership, snapshots and peer RPCs need their roles; a client
    // certificate gets PERMISSION_DENIED and changes nothing, the admin
    // certificate may administer.
    let _serial = serial().await;
    let c = Cluster::start_all("tls-roles", 1, raft_section()).await;
    let addr = c.addr(1).to_string();
    let client_channel = channel(&addr, Some(identity(&c, TlsIdentity::Client)));
    let mut client = BookingClient::new(client_channel.clone());
    let before = status(client_channel.clone()).await.unwrap();

    let denied = |r: Result<(), tonic::Status>, what: &str| {
        let err = r.expect_err(what);
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{what}: {err:?}");
        assert!(err.message().contains("admin"), "{what}: {err:?}");
    };
    denied(
        client
            .change_membership(pb::ChangeMembershipRequest {
                voter_ids: vec![1, 2],
                retain: false,
            })
            .await
            .map(drop),
        "change_membership with a client certificate",
    );
    denied(
        client
            .add_learner(pb::AddLearnerRequest {
                node_id: 2,
                addr: free_addr().to_string(),
                blocking: false,
            })
            .await
            .map(drop),
        "add_learner with a client certificate",
    );
    denied(
        client
            .remove_node(pb::RemoveNodeRequest { node_id: 1 })
            .await
            .map(drop),
        "remove_node with a client certificate",
    );
    denied(
        client
            .trigger_snapshot(pb::TriggerSnapshotRequest {})
            .await
            .map(drop),
        "trigger_snapshot with a client certificate",
    );
    // Nothing changed: same members, same log.
    let after = status(client_channel.clone()).await.unwrap();
    assert_eq!(after.members, before.members);
    assert_eq!(after.last_log_index, before.last_log_index);

    // The Raft service wants a node certificate.
    let vote = RaftClient::new(client_channel)
        .vote(pr::RaftRequest {
            cluster_name: c.config.cluster.name.clone(),
            from_node_id: 9,
            to_node_id: 1,
            body: Vec::new().into(),
            group_id: 0,
            from_incarnation: String::new(),
        })
        .await
        .expect_err("a vote from a client certificate");
    assert_eq!(vote.code(), tonic::Code::PermissionDenied, "{vote:?}");
    assert!(vote.message().contains("node"), "{vote:?}");

    // The admin certificate may take a snapshot.
    let mut admin = BookingClient::new(channel(&addr, Some(identity(&c, TlsIdentity::Admin))));
    admin
        .trigger_snapshot(pb::TriggerSnapshotRequest {})
        .await
        .expect("the admin certificate may trigger a snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_its_certificate_refuses_to_start_naming_the_file() {
    // Goal: no silent plaintext: a missing certificate stops the node at
    // start with the path in the error, before it binds or opens storage.
    let _serial = serial().await;
    let c = Cluster::new("tls-missing", 1, raft_section());
    let (cert, _) = c.config.node_tls_files(1);
    std::fs::remove_file(&cert).unwrap();
    let err = tokio::time::timeout(
        WAIT,
        raft_node::run_node(c.config.clone(), 1, true, std::future::pending()),
    )
    .await
    .expect("the node refuses at once")
    .expect_err("a node without its certificate must not start");
    let shown = err.to_string();
    assert!(shown.contains(&cert.display().to_string()), "{shown}");
    assert!(shown.contains("does not exist"), "{shown}");
    assert!(!c.config.node_data_dir(1).exists(), "storage was touched");
}
