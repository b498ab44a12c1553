//! Unit tests of the Alertmanager connector's pure logic: parsing alerts and silences in the real
//! API v2 format, matching alerts to their rules, choosing the current value, state text,
//! configuration, matchers and silence durations, and the tool specs.

use std::sync::Arc;

use serde_json::{Value, json};

use opsgate_core::Effect;

use super::client::{ApiMatcher, GettableAlert, GettableSilence};
use super::matcher::{MatchOp, Matcher, api_matcher_text, parse_silence_matchers};
use super::silences::{MAX_SILENCE_DURATION, is_silence_id, parse_silence_duration};
use super::tools::{alert_value, match_rule};
use super::{AlertmanagerClient, AlertmanagerClients, AlertmanagerConfig, alertmanager_tools, check_prometheus_links};
use crate::prometheus::promql::Labels;
use crate::prometheus::series::Direction;
use crate::prometheus::{
    MatrixSeries, PrometheusClient, PrometheusClients, PrometheusConfig, RawSample, Rule, RulesData,
};

/// `GET /api/v2/alerts` from Alertmanager 0.25: one active alert, one silenced.
const ALERTS: &str = r#"[
  {"annotations":{"runbook_url":"https://runbooks.example.com/payments-api-errors","summary":"payments-api is serving errors"},
   "endsAt":"2024-05-01T12:09:00.000Z","fingerprint":"5f1b6f7a2c1e0d3a","receivers":[{"name":"default"}],
   "startsAt":"2024-05-01T12:00:00.500Z","status":{"inhibitedBy":[],"silencedBy":[],"state":"active"},
   "updatedAt":"2024-05-01T12:05:00.000Z","generatorURL":"http://prometheus:9090/graph?g0.expr=...",
   "labels":{"alertname":"HighErrorRate","service":"payments-api","severity":"critical"}},
  {"annotations":{"summary":"disk almost full"},"endsAt":"2024-05-01T12:09:00.000Z","fingerprint":"0a0b0c0d0e0f1011",
   "receivers":[{"name":"default"}],"startsAt":"2024-05-01T11:00:00.000Z",
   "status":{"inhibitedBy":[],"silencedBy":["8c3d2a1e-5b6f-4c7d-9e8f-0a1b2c3d4e5f"],"state":"suppressed"},
   "updatedAt":"2024-05-01T12:05:00.000Z","labels":{"alertname":"DiskFull","instance":"db-1:9100","severity":"warning"}}
]"#;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
}

fn rules() -> RulesData {
    serde_json::from_value(json!({"groups": [{"name": "payments", "file": "rules.yml", "interval": 1, "rules": [
        {"type": "alerting", "name": "HighErrorRate", "duration": 0,
         "query": "sum by (service) (rate(http_requests_total{code=~\"5..\"}[1m])) / sum by (service) (rate(http_requests_total[1m])) > 0.05",
         "labels": {"severity": "critical"},
         "alerts": [{"labels": {"alertname": "HighErrorRate", "service": "payments-api", "severity": "critical"},
                     "state": "firing", "activeAt": "2024-05-01T12:00:00.5Z", "value": "1e-01"}]},
        {"type": "alerting", "name": "HighErrorRate", "duration": 300, "query": "x > 0.01", "labels": {"severity": "warning"}},
        {"type": "alerting", "name": "DiskFull", "duration": 60, "query": "disk_free < 0.1"}
    ]}]}))
    .expect("rules parse")
}

#[test]
fn parses_alerts_in_the_api_v2_format() {
    let alerts: Vec<GettableAlert> = serde_json::from_str(ALERTS).expect("alerts parse");
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0].labels["alertname"], "HighErrorRate");
    assert_eq!(alerts[0].annotations["runbook_url"], "https://runbooks.example.com/payments-api-errors");
    assert_eq!(alerts[0].status.state, "active");
    assert_eq!(alerts[0].starts_at.as_deref(), Some("2024-05-01T12:00:00.500Z"));
    assert_eq!(alerts[1].status.silenced_by, ["8c3d2a1e-5b6f-4c7d-9e8f-0a1b2c3d4e5f"]);
    assert!(alerts[1].status.muted_by.is_empty(), "mutedBy is optional");
}

#[test]
fn alerts_match_their_rule_by_name_and_labels() {
    let data = rules();
    let all: Vec<&Rule> = data.groups.iter().flat_map(|group| group.rules.iter()).collect();
    let critical = labels(&[("alertname", "HighErrorRate"), ("service", "payments-api"), ("severity", "critical")]);
    let warning = labels(&[("alertname", "HighErrorRate"), ("severity", "warning")]);
    assert_eq!(match_rule(&all, &critical).map(|rule| rule.duration), Some(0.0));
    assert_eq!(match_rule(&all, &warning).map(|rule| rule.duration), Some(300.0));
    // Two rules share the name and neither fits: ambiguous, so none.
    assert_eq!(match_rule(&all, &labels(&[("alertname", "HighErrorRate"), ("severity", "info")])), None);
    // One rule of that name: taken even when its labels were relabelled away.
    assert!(match_rule(&all, &labels(&[("alertname", "DiskFull")])).is_some());
    assert_eq!(match_rule(&all, &labels(&[("alertname", "Unknown")])), None);
}

fn series(metric: &[(&str, &str)], values: &[f64]) -> MatrixSeries {
    MatrixSeries {
        metric: labels(metric),
        values: values
            .iter()
            .enumerate()
            .map(|(index, value)| RawSample(index as f64 * 30.0, value.to_string()))
            .collect(),
    }
}

#[test]
fn the_current_value_comes_from_the_series_the_alert_carries() {
    let data = rules();
    let rule = &data.groups[0].rules[0];
    let alert = labels(&[("alertname", "HighErrorRate"), ("service", "payments-api"), ("severity", "critical")]);
    let measured = vec![
        series(&[("service", "checkout")], &[0.5, 0.5, 0.5]),
        series(&[("service", "payments-api")], &[0.06, 0.08, 0.1, 0.1, 0.12, 0.12]),
    ];
    let value = alert_value(rule, Some(&measured), &alert);
    assert_eq!(value.value, Some(0.12));
    assert_eq!(value.trend.map(|trend| trend.direction), Some(Direction::Rising));

    // A single series without matching labels (the measured side aggregated them away) is the
    // overall value.
    let overall = vec![series(&[], &[0.1, 0.1])];
    assert_eq!(alert_value(rule, Some(&overall), &alert).value, Some(0.1));

    // Without the measured side, the value Prometheus recorded on the rule's alert.
    assert_eq!(alert_value(rule, None, &alert).value, Some(0.1));
    let other = labels(&[("alertname", "HighErrorRate"), ("service", "other"), ("severity", "critical")]);
    assert_eq!(alert_value(rule, Some(&measured[..1]), &other).value, None, "checkout's value is not other's");
}

fn alertmanager_config(value: Value) -> AlertmanagerConfig {
    serde_json::from_value(value).expect("config parses")
}

#[test]
fn config_has_defaults_and_refuses_unknown_keys() {
    let config = alertmanager_config(json!({"url": "http://alertmanager:9093"}));
    assert_eq!(
        (config.environment.as_str(), config.timeout_seconds, config.prometheus.as_deref()),
        ("default", 10, None)
    );
    let unknown =
        serde_json::from_value::<AlertmanagerConfig>(json!({"url": "http://a", "prometheus_url": "http://p"}));
    assert!(unknown.is_err());
    let mut with_secret = alertmanager_config(json!({"url": "http://a", "headers": {"X-Token": "abc123"}}));
    with_secret.bearer_token = Some("inline".to_string());
    let shown = format!("{with_secret:?}");
    assert!(!shown.contains("abc123") && !shown.contains("inline"), "{shown}");
}

fn prometheus(name: &str) -> PrometheusClient {
    let config: PrometheusConfig = serde_json::from_value(json!({"url": "http://127.0.0.1:9"})).expect("config parses");
    PrometheusClient::new(name, &config, None).expect("client builds")
}

#[test]
fn prometheus_links_are_checked_at_start_up() {
    let linked = alertmanager_config(json!({"url": "http://127.0.0.1:9", "prometheus": "prod-eu"}));
    let alertmanagers =
        AlertmanagerClients::new(vec![AlertmanagerClient::new("main", &linked, None).expect("client builds")]);
    assert!(check_prometheus_links(&alertmanagers, &PrometheusClients::new(vec![prometheus("prod-eu")])).is_ok());
    let error = check_prometheus_links(&alertmanagers, &PrometheusClients::new(vec![prometheus("staging")]))
        .expect_err("prod-eu is not configured");
    assert_eq!(
        error.to_string(),
        "alertmanager main: prometheus = \"prod-eu\" is not a configured prometheus instance (configured: staging)"
    );
}

#[test]
fn the_tool_specs_are_valid_and_short() {
    let config = alertmanager_config(json!({"url": "http://127.0.0.1:9"}));
    let clients =
        AlertmanagerClients::new(vec![AlertmanagerClient::new("main", &config, None).expect("client builds")]);
    let tools = alertmanager_tools(Arc::new(clients), Arc::new(PrometheusClients::default()));
    let specs: Vec<(&str, Effect, bool, usize)> = tools
        .iter()
        .map(|tool| {
            let spec = tool.spec();
            let n_properties = spec.input_schema["properties"].as_object().map_or(0, |properties| properties.len());
            (spec.name.as_str(), spec.effect, spec.idempotent, n_properties)
        })
        .collect();
    assert_eq!(
        specs,
        [
            ("get_active_alerts", Effect::Read, true, 2),
            ("list_silences", Effect::Read, true, 2),
            ("silence_alert", Effect::Write, false, 3),
            ("expire_silence", Effect::Write, true, 1),
        ]
    );
    for tool in &tools {
        let spec = tool.spec();
        assert_eq!(spec.target_kind.as_deref(), Some("alertmanager"));
        assert!(spec.description.len() <= 200, "{}: {} bytes", spec.name, spec.description.len());
        assert_eq!(spec.input_schema["additionalProperties"], false, "{}", spec.name);
        if spec.effect == Effect::Write {
            assert!(spec.description.contains("approve"), "{} must say a human may approve it", spec.name);
        }
    }
    let silence = tools[2].spec();
    assert_eq!(silence.input_schema["required"], json!(["matchers", "duration", "comment"]));
    assert_eq!(silence.input_schema["properties"]["matchers"]["type"], "array");
    let list = tools[1].spec();
    assert_eq!(list.input_schema["properties"]["state"]["enum"], json!(["active", "pending", "expired"]));
}

/// `GET /api/v2/silences` from Alertmanager 0.25: one active silence, one expired one made by an
/// Alertmanager before 0.22 (no `isEqual`).
const SILENCES: &str = r#"[
  {"id":"8c3d2a1e-5b6f-4c7d-9e8f-0a1b2c3d4e5f","status":{"state":"active"},"updatedAt":"2024-05-01T12:00:00.000Z",
   "comment":"deploy in progress","createdBy":"opsgate:user:alice","endsAt":"2024-05-01T14:00:00.000Z",
   "matchers":[{"isEqual":true,"isRegex":false,"name":"alertname","value":"HighErrorRate"},
               {"isEqual":false,"isRegex":true,"name":"instance","value":"db-.*"}],
   "startsAt":"2024-05-01T12:00:00.000Z"},
  {"id":"0a1b2c3d-4e5f-4a7b-8c9d-0e1f2a3b4c5d","status":{"state":"expired"},"updatedAt":"2024-04-30T12:00:00.000Z",
   "comment":"old","createdBy":"bob","endsAt":"2024-04-30T12:00:00.000Z",
   "matchers":[{"isRegex":false,"name":"job","value":"batch"}],"startsAt":"2024-04-30T10:00:00.000Z"}
]"#;

#[test]
fn parses_silences_in_the_api_v2_format() {
    let silences: Vec<GettableSilence> = serde_json::from_str(SILENCES).expect("silences parse");
    assert_eq!(silences[0].status.state, "active");
    assert_eq!(silences[0].created_by, "opsgate:user:alice");
    let shown: Vec<String> = silences[0].matchers.iter().map(api_matcher_text).collect();
    assert_eq!(shown, [r#"alertname="HighErrorRate""#, r#"instance!~"db-.*""#]);
    assert!(silences[1].matchers[0].is_equal, "isEqual defaults to true");
    assert_eq!(api_matcher_text(&silences[1].matchers[0]), r#"job="batch""#);
}

/// Parses `text` and compares its operator and value, and its text form.
fn check_matcher(text: &str, op: MatchOp, value: &str, shown: &str) {
    let matcher = Matcher::parse(text).unwrap_or_else(|error| panic!("{text:?} does not parse: {error}"));
    assert_eq!((matcher.op, matcher.value.as_str()), (op, value), "{text:?}");
    assert_eq!(matcher.to_string(), shown, "{text:?}");
    // The text form is what goes to Alertmanager as a `filter`; it must read back the same.
    assert_eq!(Matcher::parse(shown).as_ref(), Ok(&matcher), "{shown:?}");
}

#[test]
fn matchers_parse_in_alertmanager_syntax() {
    check_matcher("alertname=HighErrorRate", MatchOp::Equal, "HighErrorRate", r#"alertname="HighErrorRate""#);
    check_matcher(r#"  severity = "critical"  "#, MatchOp::Equal, "critical", r#"severity="critical""#);
    check_matcher("env!=prod", MatchOp::NotEqual, "prod", r#"env!="prod""#);
    check_matcher(r#"code=~"5\d\d""#, MatchOp::Regex, r"5\d\d", r#"code=~"5\\d\\d""#);
    check_matcher(r#"instance!~"db-.*""#, MatchOp::NotRegex, "db-.*", r#"instance!~"db-.*""#);
    check_matcher(r#"msg="say \"hi\"""#, MatchOp::Equal, r#"say "hi""#, r#"msg="say \"hi\"""#);
    check_matcher(r#"path="a\\b""#, MatchOp::Equal, r"a\b", r#"path="a\\b""#);
    check_matcher(r#"text="two\nlines""#, MatchOp::Equal, "two\nlines", r#"text="two\nlines""#);
    check_matcher("team=", MatchOp::Equal, "", r#"team="""#);
    check_matcher(r#"name="a, b""#, MatchOp::Equal, "a, b", r#"name="a, b""#);
    check_matcher("_x=1", MatchOp::Equal, "1", r#"_x="1""#);
}

#[test]
fn regex_matchers_match_the_whole_value_and_a_missing_label_is_empty() {
    let code = Matcher::parse(r#"code=~"5\d\d""#).expect("parses");
    assert!(code.matches("503"));
    assert!(!code.matches("5030") && !code.matches("x503"), "anchored at both ends");
    let either = Matcher::parse("job=~api|web").expect("parses");
    assert!(either.matches("api") && either.matches("web") && !either.matches("api2"), "the alternation is grouped");
    let not_db = Matcher::parse(r#"instance!~"db-.*""#).expect("parses");
    assert!(not_db.matches("web-1") && !not_db.matches("db-1") && not_db.matches(""));
    assert!(Matcher::parse(r#"team="""#).expect("parses").matches(""));
    assert!(!Matcher::parse("team=sre").expect("parses").matches(""));
}

/// Parses `text` and expects an error containing `reason`.
fn check_bad_matcher(text: &str, reason: &str) {
    match Matcher::parse(text) {
        Ok(matcher) => panic!("{text:?} parsed as {matcher}"),
        Err(error) => assert!(error.contains(reason), "{text:?}: {error:?} does not say {reason:?}"),
    }
}

#[test]
fn bad_matchers_are_refused_with_the_reason() {
    check_bad_matcher("", "no operator");
    check_bad_matcher("alertname", "no operator");
    check_bad_matcher("=x", "no label name");
    check_bad_matcher("1abc=x", r#"label name "1abc" is invalid"#);
    check_bad_matcher("foo-bar=x", r#"label name "foo-bar" is invalid"#);
    check_bad_matcher("foo.bar=~x", r#"label name "foo.bar" is invalid"#);
    check_bad_matcher("foo!x", "unknown operator");
    check_bad_matcher(r#"code=~"(5""#, r#"regex "(5" does not compile: unclosed group"#);
    check_bad_matcher("code=~[", r#"regex "[" does not compile"#);
    check_bad_matcher(r#"foo="unterminated"#, "not closed");
    check_bad_matcher(r#"foo="a\""#, "not closed");
    check_bad_matcher(r#"foo="a"b""#, "unescaped double quote");
    check_bad_matcher(r#"foo=a"b"#, "unescaped double quote");
    check_bad_matcher("foo='x'", "double quotes");
    check_bad_matcher(r#"{alertname="x"}"#, "one matcher per element");
    check_bad_matcher("alertname=X,severity=critical", "its own element");
}

fn texts(matchers: &[&str]) -> Vec<String> {
    matchers.iter().map(|text| text.to_string()).collect()
}

#[test]
fn a_silence_needs_a_matcher_that_narrows_it_down() {
    let error = parse_silence_matchers(&[]).expect_err("none");
    assert!(error.contains("at least one"), "{error}");

    let everything = parse_silence_matchers(&texts(&[r#"alertname=~".*""#])).expect_err("matches everything");
    assert_eq!(
        everything,
        "matchers alertname=~\".*\" match every alert: each also accepts an empty or missing label, so the \
         silence would cover everything (Alertmanager refuses such silences); add one that needs a value, e.g. \
         alertname=\"HighErrorRate\""
    );
    for all_empty in [&[r#"alertname=~".*""#, r#"team="""#][..], &["job=~a|"], &["severity=~.*"]] {
        assert!(parse_silence_matchers(&texts(all_empty)).is_err(), "{all_empty:?}");
    }
    // One matcher that needs a value is enough; a negative one counts, as in Alertmanager.
    assert_eq!(parse_silence_matchers(&texts(&[r#"alertname=~".*""#, "team=sre"])).map(|m| m.len()), Ok(2));
    assert!(parse_silence_matchers(&texts(&[r#"alertname=~".*""#, r#"severity!="info""#])).is_ok());
    assert!(parse_silence_matchers(&texts(&["alertname=~.+"])).is_ok());

    let named = parse_silence_matchers(&texts(&["alertname=X", "bad name=x"])).expect_err("second is bad");
    assert!(named.starts_with(r#"matchers[1] "bad name=x": label name "bad name" is invalid"#), "{named}");
}

#[test]
fn matchers_go_to_the_api_with_both_flags() {
    let api = |text: &str| Matcher::parse(text).expect("parses").to_api();
    let flags = |matcher: ApiMatcher| (matcher.is_equal, matcher.is_regex);
    assert_eq!(flags(api("a=1")), (true, false));
    assert_eq!(flags(api("a!=1")), (false, false));
    assert_eq!(flags(api("a=~1")), (true, true));
    assert_eq!(flags(api("a!~1")), (false, true));
    assert_eq!(
        serde_json::to_value(api(r#"code=~"5\d\d""#)).expect("serializes"),
        json!({"name": "code", "value": "5\\d\\d", "isRegex": true, "isEqual": true})
    );
}

#[test]
fn silence_durations_have_a_unit_and_a_limit() {
    let minutes = |text: &str| parse_silence_duration(text).map(|duration| duration.as_secs() / 60);
    assert_eq!(minutes("30m"), Ok(30));
    assert_eq!(minutes(" 2h "), Ok(120));
    assert_eq!(minutes("1h30m"), Ok(90));
    assert_eq!(minutes("1d"), Ok(1440));
    assert_eq!(parse_silence_duration("7d"), Ok(MAX_SILENCE_DURATION));
    for (bad, reason) in [
        ("", "empty duration"),
        ("0s", "must be positive"),
        ("0", "needs a unit"),
        ("30", "needs a unit"),
        ("-1h", "is not like"),
        ("2x", "unknown unit"),
        ("8d", "longer than the 7d limit"),
        ("1w1s", "longer than the 7d limit"),
    ] {
        match parse_silence_duration(bad) {
            Ok(duration) => panic!("{bad:?} parsed as {duration:?}"),
            Err(error) => assert!(error.contains(reason), "{bad:?}: {error:?} does not say {reason:?}"),
        }
    }
}

#[test]
fn silence_ids_are_uuids() {
    assert!(is_silence_id("8c3d2a1e-5b6f-4c7d-9e8f-0a1b2c3d4e5f"));
    assert!(is_silence_id("8C3D2A1E-5B6F-4C7D-9E8F-0A1B2C3D4E5F"));
    for bad in
        ["", "8c3d2a1e", "8c3d2a1e-5b6f-4c7d-9e8f-0a1b2c3d4e5", "8c3d2a1e-5b6f-4c7d-9e8f-0a1b2c3d4e5g", "../alerts"]
    {
        assert!(!is_silence_id(bad), "{bad:?}");
    }
}
