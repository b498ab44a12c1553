//! Approval rules in the store, each on SQLite and on PostgreSQL: every way to decide a request
//! wrongly is refused with a reason, two approvals mean two distinct approvers, a request runs at
//! most once, and pending requests survive reopening the store.

use anyhow::Result;
use opsgate_store::approvals::new_approval_id;
use opsgate_store::{ApprovalError, ApprovalStatus, DecisionRequest, NewApproval, Store};
use support::stores;

mod support;

const NOW: &str = "2026-11-21T12:00:00.000Z";
const LATER: &str = "2026-11-21T12:45:00.000Z";

fn request(approvals_required: u32) -> NewApproval {
    NewApproval {
        id: new_approval_id(),
        created_at: NOW.into(),
        expires_at: "2026-11-21T12:30:00.000Z".into(),
        requester: "key:agent".into(),
        requester_kind: "api_key".into(),
        requester_roles: vec!["operator".into()],
        client: Some("claude-code".into()),
        tool: "silence_alert".into(),
        target: Some("am-prod".into()),
        environment: Some("production".into()),
        arguments: r#"{"comment":"deploy","duration":"1h","matchers":["alertname=HighErrorRate"]}"#.into(),
        arguments_hash: "ab".repeat(32),
        plan: Some(serde_json::json!({"summary": "silence 1 alert", "blast_radius": 1})),
        reason: "silence_alert writes to production, a protected environment".into(),
        approvals_required,
        approver_roles: vec!["approver".into()],
    }
}

fn decide<'a>(id: &'a str, principal: &'a str, roles: &'a [String], approve: bool) -> DecisionRequest<'a> {
    DecisionRequest { id, principal, roles, approve, comment: None, now: NOW }
}

/// What a refused decision's error must be.
type Expect = fn(&ApprovalError) -> bool;

fn approver() -> Vec<String> {
    vec!["approver".to_string()]
}

#[tokio::test]
async fn wrong_decisions_are_refused_and_change_nothing() -> Result<()> {
    for (store, _dir) in stores("approvals_refused").await? {
        let pending = request(1);
        store.create_approval(&pending).await?;
        let id = pending.id.as_str();
        let operator = vec!["operator".to_string()];
        let roles = approver();
        let cases: Vec<(DecisionRequest<'_>, Expect)> = vec![
            (decide(id, "key:agent", &roles, true), |error| matches!(error, ApprovalError::SelfApproval { .. })),
            (decide(id, "user:bob", &operator, true), |error| matches!(error, ApprovalError::MissingRole { .. })),
            (decide("apr_nope", "user:bob", &operator, true), |error| matches!(error, ApprovalError::MalformedId(_))),
            (decide("apr_0123456789abcdef0123456789abcdef", "user:bob", &operator, true), |error| {
                matches!(error, ApprovalError::NotFound(_))
            }),
        ];
        for (attempt, expected) in &cases {
            let error = store.decide_approval(attempt).await.expect_err("refused");
            assert!(expected(&error), "{}: {error}", store.backend());
        }
        let stored = store.approval(id).await?.expect("stored");
        assert_eq!((stored.status, stored.decisions.len()), (ApprovalStatus::Pending, 0), "{}", store.backend());
    }
    Ok(())
}

#[tokio::test]
async fn two_required_approvals_need_two_distinct_approvers_and_run_once() -> Result<()> {
    for (store, _dir) in stores("approvals_two").await? {
        let pending = request(2);
        store.create_approval(&pending).await?;
        let id = pending.id.as_str();
        let roles = approver();
        assert_eq!(store.decide_approval(&decide(id, "user:bob", &roles, true)).await?, ApprovalStatus::Pending);
        let twice = store.decide_approval(&decide(id, "user:bob", &roles, true)).await;
        assert!(matches!(twice, Err(ApprovalError::AlreadyDecided { .. })), "{}", store.backend());
        assert!(!store.claim_approval(id, NOW).await?, "one approval of two must not run");
        assert_eq!(store.decide_approval(&decide(id, "user:carol", &roles, true)).await?, ApprovalStatus::Approved);
        let after = store.decide_approval(&decide(id, "user:dave", &roles, true)).await;
        assert!(matches!(after, Err(ApprovalError::NotPending { status: ApprovalStatus::Approved, .. })));
        let (first, second) = tokio::join!(store.claim_approval(id, NOW), store.claim_approval(id, NOW));
        assert_eq!([first?, second?].iter().filter(|claimed| **claimed).count(), 1, "{}", store.backend());
        store
            .finish_approval(id, ApprovalStatus::Executed, Some(&serde_json::json!({"text": "ok"})), None, NOW)
            .await?;
        let done = store.approval(id).await?.expect("stored");
        assert_eq!(done.status, ApprovalStatus::Executed);
        assert_eq!(done.approvers(), vec!["user:bob".to_string(), "user:carol".to_string()]);
        assert!(!store.claim_approval(id, NOW).await?, "an executed request never runs again");
    }
    Ok(())
}

#[tokio::test]
async fn rejections_and_expiry_end_a_request() -> Result<()> {
    for (store, _dir) in stores("approvals_end").await? {
        let rejected = request(2);
        store.create_approval(&rejected).await?;
        let roles = approver();
        let status = store.decide_approval(&decide(&rejected.id, "user:bob", &roles, false)).await?;
        assert_eq!(status, ApprovalStatus::Rejected);
        assert!(!store.claim_approval(&rejected.id, NOW).await?);

        let late = request(1);
        store.create_approval(&late).await?;
        let mut attempt = decide(&late.id, "user:bob", &roles, true);
        attempt.now = LATER;
        assert!(matches!(store.decide_approval(&attempt).await, Err(ApprovalError::Expired { .. })));
        assert_eq!(store.approval(&late.id).await?.map(|approval| approval.status), Some(ApprovalStatus::Expired));

        let swept = request(1);
        store.create_approval(&swept).await?;
        assert_eq!(store.expire_approvals(LATER).await?, 1, "{}", store.backend());
        let listed = store.approvals(Some(ApprovalStatus::Expired), 10).await?;
        assert_eq!(listed.len(), 2);
        assert_eq!(store.approvals(None, 10).await?.len(), 3, "{}", store.backend());
        assert_eq!(store.approvals(None, 1).await?.len(), 1);
    }
    Ok(())
}

#[tokio::test]
async fn a_pending_request_survives_reopening_the_store() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pending = request(1);
    {
        let store = Store::open_sqlite(dir.path()).await?;
        store.create_approval(&pending).await?;
        store.close().await;
    }
    let store = Store::open_sqlite(dir.path()).await?;
    let reloaded = store.approval(&pending.id).await?.expect("still there");
    assert_eq!((reloaded.status, reloaded.request), (ApprovalStatus::Pending, pending));
    Ok(())
}

/// A caller who may see only a few old requests still gets them all when many newer ones belong
/// to others: the filter runs before the limit, across pages (more requests than one page).
#[tokio::test]
async fn a_filtered_listing_reaches_past_other_principals_newer_requests() -> Result<()> {
    for (store, _dir) in stores("approvals_filtered").await? {
        let mut mine = Vec::new();
        for minute in 0..3 {
            let mut own = request(1);
            own.requester = "key:quiet".into();
            own.created_at = format!("2026-11-21T11:0{minute}:00.000Z");
            store.create_approval(&own).await?;
            mine.push(own.id);
        }
        for _ in 0..300 {
            store.create_approval(&request(1)).await?;
        }
        let listed = store.approvals_where(None, 200, |approval| approval.request.requester == "key:quiet").await?;
        let listed: Vec<String> = listed.into_iter().map(|approval| approval.request.id).collect();
        mine.reverse();
        assert_eq!(listed, mine, "{}: newest first, none missing", store.backend());
        let everything = store.approvals_where(Some(ApprovalStatus::Pending), 1_000, |_| true).await?;
        assert_eq!(everything.len(), 303, "{}: every row once across pages", store.backend());
        assert_eq!(store.approvals_where(None, 2, |_| true).await?.len(), 2);
    }
    Ok(())
}
