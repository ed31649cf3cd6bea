//! The client's routing and retry loop for a lone write, against the
//! scripted fake nodes of `common`: leader hints, unknown outcomes retried
//! under the same ids, definite refusals, dead endpoints and first-send
//! marking. Batching of concurrent writes is tested in `batching.rs`.

mod common;

use std::time::Duration;

use client::state_machine::Reply;
use client::{Client, ClientError, Ids, RequestIds};
use common::{command, fake_node, fast_options, Action};

// Goal: a follower's not_leader hint sends the write to the leader, which is then cached.
#[tokio::test]
async fn follows_the_leader_hint_and_caches_it() {
    let (leader_addr, leader) = fake_node(2, vec![]).await;
    let (follower_addr, follower) = fake_node(
        1,
        vec![
            Action::NotLeader {
                leader_addr: leader_addr.to_string()
            };
            3
        ],
    )
    .await;
    let client = Client::with_options([follower_addr.to_string()], fast_options()).unwrap();
    let first = client.submit(Ids::New, command()).await.unwrap();
    assert_eq!(first.attempts, 2);
    assert_eq!(first.leader_id, 2);
    assert_eq!(
        client.cached_leader(),
        Some(format!("http://{leader_addr}"))
    );
    let second = client.submit(Ids::New, command()).await.unwrap();
    assert_eq!(second.attempts, 1, "the cached leader is asked first");
    assert_eq!(follower.seen.lock().unwrap().len(), 1);
    assert_eq!(leader.seen.lock().unwrap().len(), 2);
}

// Goal: a write whose outcome is unknown is retried with the SAME (client_id, request_id).
#[tokio::test]
async fn unknown_outcome_is_retried_with_the_same_ids() {
    let (addr, node) = fake_node(
        1,
        vec![
            Action::Error {
                code: "outcome_unknown",
                outcome: "unknown",
            },
            Action::Hang(Duration::from_millis(2_000)),
            Action::Ok,
        ],
    )
    .await;
    let client = Client::with_options([addr.to_string()], fast_options()).unwrap();
    let submitted = client.submit(Ids::New, command()).await.unwrap();
    assert_eq!(submitted.attempts, 3);
    let seen = node.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|&ids| ids == (submitted.ids.client_id, submitted.ids.request_id)),
        "{seen:?}"
    );
    assert_eq!(submitted.ids.client_id, client.client_id());
    assert_eq!(
        submitted.outcome,
        Ok(Reply::Released {
            hold_id: submitted.ids.request_id
        })
    );
}

// Goal: request ids increase per write, and client ids are never 0.
#[tokio::test]
async fn request_ids_increase() {
    let (addr, node) = fake_node(1, vec![]).await;
    let client = Client::with_options([addr.to_string()], fast_options()).unwrap();
    for _ in 0..3 {
        assert!(client
            .submit(Ids::New, command())
            .await
            .unwrap()
            .outcome
            .is_ok());
    }
    let seen = node.seen.lock().unwrap().clone();
    assert_ne!(client.client_id(), 0);
    assert!(seen.windows(2).all(|w| w[0].1 < w[1].1), "{seen:?}");
}

// Goal: exhausting retries after a possibly-applied attempt reports an unknown outcome, with the id to retry.
#[tokio::test]
async fn exhausted_after_unknown_is_outcome_unknown() {
    let plan = vec![
        Action::Error {
            code: "outcome_unknown",
            outcome: "unknown"
        };
        10
    ];
    let (addr, _node) = fake_node(1, plan).await;
    let client = Client::with_options([addr.to_string()], fast_options()).unwrap();
    let err = client.submit(Ids::New, command()).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::OutcomeUnknown {
                attempts: 5,
                request_id: Some(1),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_definite());
    assert!(err.is_retryable());
}

// Goal: a resend under the ids an unknown outcome reported carries exactly those ids.
#[tokio::test]
async fn resend_reuses_the_reported_ids() {
    let (addr, node) = fake_node(
        1,
        vec![
            Action::Error {
                code: "outcome_unknown",
                outcome: "unknown"
            };
            5
        ],
    )
    .await;
    let client = Client::with_options([addr.to_string()], fast_options()).unwrap();
    let ClientError::OutcomeUnknown {
        client_id,
        request_id: Some(request_id),
        ..
    } = client.submit(Ids::New, command()).await.unwrap_err()
    else {
        panic!("five unknown answers end in OutcomeUnknown with the ids")
    };
    let ids = RequestIds {
        client_id,
        request_id,
    };
    let submitted = client.submit(Ids::Resend(ids), command()).await.unwrap();
    assert_eq!(submitted.ids, ids);
    let seen = node.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 6);
    assert!(
        seen.iter().all(|&s| s == (client_id, request_id)),
        "{seen:?}"
    );
}

// Goal: exhausting retries that were all refused before proposing is a definite Unavailable.
#[tokio::test]
async fn exhausted_without_proposal_is_definite_unavailable() {
    let plan = vec![
        Action::Error {
            code: "no_leader",
            outcome: "not_applied"
        };
        10
    ];
    let (addr, _node) = fake_node(1, plan).await;
    let client = Client::with_options([addr.to_string()], fast_options()).unwrap();
    let err = client.submit(Ids::New, command()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Unavailable { attempts: 5, .. }),
        "{err:?}"
    );
    assert!(err.is_definite());
    assert!(err.is_retryable());
}

// Goal: a node that refuses the request as malformed ends the call at once.
#[tokio::test]
async fn invalid_argument_is_rejected_without_retry() {
    let (addr, node) = fake_node(
        1,
        vec![Action::Error {
            code: "invalid_argument",
            outcome: "not_applied",
        }],
    )
    .await;
    let client = Client::with_options([addr.to_string()], fast_options()).unwrap();
    let err = client.submit(Ids::New, command()).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Rejected { code, .. } if code == "invalid_argument"),
        "{err:?}"
    );
    assert!(err.is_definite());
    assert!(!err.is_retryable());
    assert_eq!(node.seen.lock().unwrap().len(), 1);
}

// Goal: a dead endpoint (connection refused) is skipped for a live one, and counts as not applied.
#[tokio::test]
async fn refused_connection_moves_on_to_the_next_endpoint() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let (addr, node) = fake_node(3, vec![]).await;
    let client =
        Client::with_options([dead_addr.to_string(), addr.to_string()], fast_options()).unwrap();
    let submitted = client.submit(Ids::New, command()).await.unwrap();
    assert_eq!(submitted.leader_id, 3);
    assert_eq!(node.seen.lock().unwrap().len(), 1);

    let only_dead = Client::with_options([dead_addr.to_string()], fast_options()).unwrap();
    let err = only_dead.submit(Ids::New, command()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Unavailable { .. }),
        "a refused connection applied nothing: {err:?}"
    );
}

// Goal: no endpoints, or an unusable one, is refused up front.
#[test]
fn bad_endpoints_are_refused() {
    let none: [&str; 0] = [];
    assert!(matches!(
        Client::connect(none),
        Err(ClientError::InvalidEndpoint { .. })
    ));
    assert!(matches!(
        Client::connect(["http://bad host:1"]),
        Err(ClientError::InvalidEndpoint { .. })
    ));
}

// Goal: only a first send is marked `first_send`: it stays marked across
// "not applied" refusals, and is unmarked from the first attempt after an
// unknown outcome on; explicit ids are a first send only as `Ids::FirstSend`.
#[tokio::test]
async fn only_first_sends_are_marked() {
    let (addr, node) = fake_node(
        1,
        vec![
            Action::Error {
                code: "no_leader",
                outcome: "not_applied",
            },
            Action::Error {
                code: "outcome_unknown",
                outcome: "unknown",
            },
            Action::Ok,
        ],
    )
    .await;
    let client = Client::with_options([addr.to_string()], fast_options()).unwrap();
    let submitted = client.submit(Ids::New, command()).await.unwrap();
    assert_eq!(submitted.attempts, 3);
    assert!(!submitted.answered_without_log_write);
    assert_eq!(*node.first_sends.lock().unwrap(), vec![true, true, false]);
    node.first_sends.lock().unwrap().clear();
    let own = |request_id| RequestIds {
        client_id: client.client_id(),
        request_id,
    };
    client
        .submit(Ids::Resend(own(77)), command())
        .await
        .unwrap();
    client
        .submit(Ids::FirstSend(own(78)), command())
        .await
        .unwrap();
    assert_eq!(*node.first_sends.lock().unwrap(), vec![false, true]);
}

// Goal: `Ids::FirstSend` follows the same rule as `Ids::New` within a call:
// marked across "not applied", unmarked after an unknown outcome.
#[tokio::test]
async fn first_send_ids_are_unmarked_after_an_unknown_outcome() {
    let (addr, node) = fake_node(
        1,
        vec![
            Action::Error {
                code: "overloaded",
                outcome: "not_applied",
            },
            Action::Error {
                code: "outcome_unknown",
                outcome: "unknown",
            },
            Action::Ok,
        ],
    )
    .await;
    let client = Client::with_options([addr.to_string()], fast_options()).unwrap();
    let ids = client.mint_ids();
    let submitted = client.submit(Ids::FirstSend(ids), command()).await.unwrap();
    assert_eq!(submitted.ids, ids);
    assert_eq!(*node.first_sends.lock().unwrap(), vec![true, true, false]);
}

// Goal: derived ids (another process may send them too) are sent unchanged
// and never marked `first_send`, not even on their first attempt.
#[tokio::test]
async fn derived_ids_are_never_marked_and_sent_unchanged() {
    let (addr, node) = fake_node(
        1,
        vec![Action::Error {
            code: "no_leader",
            outcome: "not_applied",
        }],
    )
    .await;
    let client = Client::with_options([addr.to_string()], fast_options()).unwrap();
    let ids = RequestIds {
        client_id: (1 << 63) | 5,
        request_id: 9,
    };
    let submitted = client.submit(Ids::Derived(ids), command()).await.unwrap();
    assert_eq!(submitted.ids, ids);
    assert_eq!(submitted.attempts, 2);
    assert_eq!(*node.first_sends.lock().unwrap(), vec![false, false]);
    assert_eq!(
        *node.seen.lock().unwrap(),
        vec![(ids.client_id, 9), (ids.client_id, 9)]
    );
}
