//! The silence tools against a real Alertmanager, to which a real Prometheus sends a firing
//! HighErrorRate alert for payments-api. The tools are called directly (plan, then call), as the
//! pipeline will once policy and a human let a write through; Alertmanager's own API, read
//! without opsgate, confirms what they did.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use opsgate_connectors::alertmanager::alertmanager_tools;
use opsgate_core::{Plan, Tool, ToolError};
use opsgate_testkit::Alertmanager;
use serde_json::{Value, json};
use support::{WAIT, call, find, plan};

/// Alertmanager's API, read directly.
async fn get_json(url: &str) -> Result<Value> {
    let response = reqwest::get(url).await.with_context(|| format!("GET {url}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!("GET {url} returned {status}");
    }
    response.json().await.with_context(|| format!("decode {url}"))
}

/// Polls Alertmanager until the HighErrorRate alert's `silencedBy` contains `id` (`silenced`
/// true) or not (false), and returns the alert.
async fn wait_for_silenced_by(alertmanager: &Alertmanager, id: &str, silenced: bool) -> Result<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let alerts = alertmanager.alerts().await?;
        let alert = alerts.iter().find(|alert| alert["labels"]["alertname"] == "HighErrorRate").cloned();
        if let Some(alert) = alert {
            let by = alert["status"]["silencedBy"].as_array().cloned().unwrap_or_default();
            if by.iter().any(|by| by == id) == silenced {
                return Ok(alert);
            }
            if Instant::now() >= deadline {
                bail!("HighErrorRate's silencedBy is {by:?} after {WAIT:?}; expected it to contain {id}: {silenced}");
            }
        } else if Instant::now() >= deadline {
            bail!("no HighErrorRate alert in alertmanager after {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn planned(plan: Option<Plan>) -> Plan {
    plan.expect("a write tool has a plan")
}

#[tokio::test]
async fn a_silence_is_planned_created_listed_and_expired_in_a_real_alertmanager() -> Result<()> {
    let (alertmanager, _payments, prometheus) = support::firing_high_error_rate().await?;
    let tools = alertmanager_tools(
        support::alertmanager_clients("main", &alertmanager.url(), "local"),
        support::prometheus_clients("local", &prometheus.url(), 5),
    );
    let (silence, expire, list) =
        (find(&tools, "silence_alert"), find(&tools, "expire_silence"), find(&tools, "list_silences"));
    let arguments = json!({
        "matchers": ["alertname=HighErrorRate", r#"service="payments-api""#],
        "duration": "2h",
        "comment": "payments-api rollback in progress",
    });

    // The plan counts the firing alert, and nothing for matchers that select nothing.
    let preview = planned(plan(&silence, "main", arguments.clone()).await?);
    assert_eq!(
        preview.summary,
        r#"silence 1 alert matching alertname="HighErrorRate", service="payments-api" in alertmanager main for 2h"#
    );
    assert_eq!((preview.blast_radius, preview.unit.as_str()), (1, "alerts"));
    let item = &preview.items[0];
    assert_eq!(
        (&item["alertname"], &item["service"], &item["severity"], &item["state"]),
        (&json!("HighErrorRate"), &json!("payments-api"), &json!("critical"), &json!("active"))
    );
    assert!(item["starts_at"].as_str().is_some_and(|time| time.ends_with('Z')), "{item}");
    let nothing = json!({"matchers": ["alertname=DiskFull"], "duration": "30m", "comment": "disk maintenance"});
    let preview = planned(plan(&silence, "main", nothing).await?);
    assert_eq!(preview.blast_radius, 0);
    assert!(preview.items.is_empty());
    assert!(preview.summary.contains("none is firing now"), "{}", preview.summary);
    // Alertmanager anchors regexes: "High" alone is not the alert's name, "High.*" matches it.
    let anchored = json!({"matchers": ["alertname=~High"], "duration": "30m", "comment": "test"});
    assert_eq!(planned(plan(&silence, "main", anchored).await?).blast_radius, 0);
    let prefix =
        json!({"matchers": [r#"alertname=~"High.*""#, "severity!=info"], "duration": "30m", "comment": "test"});
    assert_eq!(planned(plan(&silence, "main", prefix).await?).blast_radius, 1);

    // The call creates the silence, for the principal, and returns what it covers.
    let started = chrono::Utc::now();
    let created = call(&silence, "main", arguments.clone()).await?;
    let id = created.fields["silence_id"].as_str().context("silence_id")?.to_string();
    assert_eq!(created.fields["created_by"], "opsgate:user:alice");
    assert_eq!(created.fields["n_alerts"], 1);
    assert_eq!(created.fields["matchers"], json!([r#"alertname="HighErrorRate""#, r#"service="payments-api""#]));
    assert_eq!(created.rows.len(), 1);
    assert_eq!(created.rows[0].item["alertname"], "HighErrorRate");
    assert!(created.summary[0].starts_with(&format!("created silence {id} in alertmanager main: 1 alert matching")));

    // Alertmanager holds it, active, as sent…
    let held = get_json(&format!("{}/api/v2/silences", alertmanager.url())).await?;
    let held = held.as_array().into_iter().flatten().find(|silence| silence["id"] == id.as_str()).context("silence")?;
    assert_eq!(held["status"]["state"], "active");
    assert_eq!(held["createdBy"], "opsgate:user:alice");
    assert_eq!(held["comment"], "payments-api rollback in progress");
    assert_eq!(
        held["matchers"],
        json!([
            {"name": "alertname", "value": "HighErrorRate", "isRegex": false, "isEqual": true},
            {"name": "service", "value": "payments-api", "isRegex": false, "isEqual": true},
        ])
    );
    let time = |field: &str| {
        held[field]
            .as_str()
            .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
            .with_context(|| format!("{field} in {held}"))
    };
    let length = time("endsAt")? - time("startsAt")?;
    assert!((length - chrono::Duration::hours(2)).num_seconds().abs() <= 5, "silence lasts {length}");
    assert!((time("startsAt")?.to_utc() - started).num_seconds().abs() <= 5);
    // …and the alert is silenced by it.
    let alert = wait_for_silenced_by(&alertmanager, &id, true).await?;
    assert_eq!(alert["status"]["state"], "suppressed");

    // list_silences shows it, by default and by its matcher; not among expired ones.
    let listed = call(&list, "main", json!({})).await?;
    assert_eq!(listed.summary, ["1 active or pending silences in alertmanager main"]);
    assert_eq!(listed.rows[0].item["id"], id.as_str());
    assert_eq!(listed.rows[0].item["created_by"], "opsgate:user:alice");
    assert_eq!(listed.rows[0].item["comment"], "payments-api rollback in progress");
    assert_eq!(listed.rows[0].cells[2], r#"alertname="HighErrorRate", service="payments-api""#);
    let by_matcher = call(&list, "main", json!({"matcher": "alertname=HighErrorRate"})).await?;
    assert_eq!(by_matcher.rows.len(), 1);
    let other = call(&list, "main", json!({"matcher": "alertname=DiskFull"})).await?;
    assert_eq!(
        other.summary,
        [r#"no active or pending silences with matcher alertname="DiskFull" in alertmanager main"#]
    );
    assert!(call(&list, "main", json!({"state": "expired"})).await?.rows.is_empty());

    // Expiring: the plan lists the alert whose notifications resume, the call expires it.
    let preview = planned(plan(&expire, "main", json!({"id": id})).await?);
    assert_eq!(
        preview.summary,
        format!(
            r#"expire silence {id} (alertname="HighErrorRate", service="payments-api" by opsgate:user:alice: "payments-api rollback in progress") in alertmanager main: notifications resume for 1 alert"#
        )
    );
    assert_eq!((preview.blast_radius, preview.unit.as_str()), (1, "alerts"));
    assert_eq!((&preview.items[0]["alertname"], &preview.items[0]["resumes"]), (&json!("HighErrorRate"), &json!(true)));
    let expired = call(&expire, "main", json!({"id": id})).await?;
    assert_eq!(expired.fields["state"], "expired");
    assert_eq!(expired.fields["n_alerts_resumed"], 1);
    assert_eq!(expired.rows[0].cells[3], "notifies again");
    let held = get_json(&format!("{}/api/v2/silence/{id}", alertmanager.url())).await?;
    assert_eq!(held["status"]["state"], "expired");
    wait_for_silenced_by(&alertmanager, &id, false).await?;
    assert!(call(&list, "main", json!({})).await?.rows.is_empty());
    let listed = call(&list, "main", json!({"state": "expired"})).await?;
    assert_eq!(listed.rows[0].item["id"], id.as_str());

    // Expiring it again, or an id Alertmanager never had, is a clear error.
    let again = format!("silence {id} in alertmanager main already expired at ");
    for result in [
        plan(&expire, "main", json!({"id": id})).await.map(|_| ()),
        call(&expire, "main", json!({"id": id})).await.map(|_| ()),
    ] {
        match result {
            Err(ToolError::Backend(message)) => assert!(message.starts_with(&again), "{message}"),
            other => panic!("expected already expired, got {other:?}"),
        }
    }
    let unknown = "00000000-0000-4000-8000-000000000000";
    for result in [
        plan(&expire, "main", json!({"id": unknown})).await.map(|_| ()),
        call(&expire, "main", json!({"id": unknown})).await.map(|_| ()),
    ] {
        match result {
            Err(ToolError::Backend(message)) => assert!(
                message
                    .starts_with(&format!("alertmanager main has no silence {unknown}; list_silences shows the ids")),
                "{message}"
            ),
            other => panic!("expected an unknown silence, got {other:?}"),
        }
    }
    Ok(())
}

/// Calls and plans `tool` with `arguments` and expects `InvalidArguments` containing `reason`
/// from both.
async fn check_invalid(tool: &Arc<dyn Tool>, arguments: Value, reason: &str) {
    let planned = plan(tool, "main", arguments.clone()).await.map(|_| ());
    let called = call(tool, "main", arguments.clone()).await.map(|_| ());
    for (what, result) in [("plan", planned), ("call", called)] {
        match result {
            Err(ToolError::InvalidArguments(message)) => {
                assert!(message.contains(reason), "{what} {arguments}: {message:?} does not say {reason:?}")
            }
            other => panic!("{what} {arguments}: expected invalid arguments, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn bad_silence_arguments_are_refused_before_alertmanager_is_asked() -> Result<()> {
    // Nothing listens here: arguments are checked before any request.
    let url = format!("http://127.0.0.1:{}", opsgate_testkit::free_port());
    let tools = alertmanager_tools(
        support::alertmanager_clients("main", &url, "local"),
        support::prometheus_clients("local", &url, 5),
    );
    let (silence, expire, list) =
        (find(&tools, "silence_alert"), find(&tools, "expire_silence"), find(&tools, "list_silences"));
    let with = |matchers: Value, duration: &str, comment: &str| json!({"matchers": matchers, "duration": duration, "comment": comment});
    for (arguments, reason) in [
        (with(json!([]), "1h", "x"), "matchers: give at least one"),
        (with(json!([r#"alertname=~".*""#]), "1h", "x"), r#"matchers alertname=~".*" match every alert"#),
        (
            with(json!(["alertname=X", "foo-bar=x"]), "1h", "x"),
            r#"matchers[1] "foo-bar=x": label name "foo-bar" is invalid"#,
        ),
        (with(json!([r#"code=~"(5""#]), "1h", "x"), r#"matchers[0] "code=~\"(5\"": regex "(5" does not compile"#),
        (with(json!(["alertname"]), "1h", "x"), "no operator"),
        (with(json!(["alertname=X"]), "30", "x"), "needs a unit"),
        (with(json!(["alertname=X"]), "0s", "x"), "must be positive"),
        (with(json!(["alertname=X"]), "8d", "x"), "longer than the 7d limit"),
        (with(json!(["alertname=X"]), "soon", "x"), "duration \"soon\""),
        (with(json!(["alertname=X"]), "1h", "  "), "comment: say why"),
        (json!({"matchers": ["alertname=X"], "duration": "1h"}), "missing field `comment`"),
        (json!({"matchers": "alertname=X", "duration": "1h", "comment": "x"}), "expected a sequence"),
        (
            json!({"matchers": ["alertname=X"], "duration": "1h", "comment": "x", "confirm": true}),
            "unknown field `confirm`",
        ),
    ] {
        check_invalid(&silence, arguments, reason).await;
    }
    check_invalid(&expire, json!({"id": "not-a-uuid"}), r#"id "not-a-uuid" is not a silence id"#).await;
    check_invalid(&expire, json!({}), "missing field `id`").await;
    for (arguments, reason) in [
        (json!({"matcher": "bad name=x"}), "matcher \"bad name=x\": label name"),
        (json!({"state": "gone"}), "unknown variant `gone`"),
    ] {
        match call(&list, "main", arguments.clone()).await {
            Err(ToolError::InvalidArguments(message)) => assert!(message.contains(reason), "{arguments}: {message}"),
            other => panic!("{arguments}: expected invalid arguments, got {other:?}"),
        }
    }

    // Valid arguments do reach Alertmanager, and a refused connection is plainly unavailable
    // (nothing can have been created).
    match call(&silence, "main", with(json!(["alertname=X"]), "1h", "x")).await {
        Err(ToolError::Unavailable(message)) => {
            assert_eq!(message, format!("alertmanager main at {url} is unreachable: connection refused"))
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    Ok(())
}
