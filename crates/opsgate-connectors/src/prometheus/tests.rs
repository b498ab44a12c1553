//! Unit tests of the Prometheus connector's pure logic: PromQL templates and text handling,
//! series arithmetic, API response parsing (samples in the real API format), configuration, and
//! the tool specs and argument checks that need no server.

use std::sync::Arc;
use std::time::Duration;

use opsgate_core::{CallContext, NoClient, OutputBudget, ToolError};
use serde_json::{Value, json};

use super::catalog::{self, Aggregation, SignalCatalog, TemplateValues, Unit};
use super::client::{Decoded, MetricMetadata, PrometheusError, QueryResult, RulesData, decode};
use super::config::{MetricsCatalogConfig, PrometheusConfig, SignalOverride};
use super::promql::{self, Comparison, Labels};
use super::series::{self, Direction, Point};
use super::tools;
use super::{PrometheusClient, PrometheusClients, prometheus_tools};
use crate::format;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
}

fn points(values: &[f64]) -> Vec<Point> {
    values
        .iter()
        .enumerate()
        .map(|(index, value)| Point { time: 1000.0 + index as f64 * 60.0, value: *value })
        .collect()
}

// --- format -----------------------------------------------------------------------------------

#[test]
fn numbers_have_four_significant_digits_and_no_trailing_zeros() {
    let check = |value: f64, expect: &str| assert_eq!(format::number(value), expect, "{value}");
    check(0.1, "0.1");
    check(0.09999999, "0.1");
    check(0.4975, "0.4975");
    check(12.345678, "12.35");
    check(123456.0, "123456");
    check(2.0, "2");
    check(-0.05, "-0.05");
    check(0.0, "0");
    check(0.00001234, "1.234e-5");
    check(5.0e9, "5e9");
    check(f64::NAN, "NaN");
    check(f64::INFINITY, "+Inf");
}

#[test]
fn durations_parse_in_the_prometheus_style() {
    let check = |text: &str, seconds: u64| {
        assert_eq!(format::parse_duration(text), Ok(Duration::from_secs(seconds)), "{text}");
    };
    check("90s", 90);
    check("5m", 300);
    check("1h30m", 5400);
    check("7d", 7 * 86_400);
    check("2w", 14 * 86_400);
    check("60", 60);
    assert_eq!(format::parse_duration("500ms"), Ok(Duration::from_millis(500)));
    for bad in ["", "h", "5x", "-5m", "0s", "1.5h"] {
        assert!(format::parse_duration(bad).is_err(), "{bad:?} should not parse");
    }
}

#[test]
fn durations_print_compactly() {
    assert_eq!(format::promql_duration(300), "5m");
    assert_eq!(format::promql_duration(7200), "2h");
    assert_eq!(format::promql_duration(86_400), "1d");
    assert_eq!(format::promql_duration(25), "25s");
    assert_eq!(format::promql_duration(0), "1s");
    assert_eq!(format::human_duration(Duration::from_secs(4800)), "1h20m");
    assert_eq!(format::human_duration(Duration::from_secs(45)), "45s");
    assert_eq!(format::human_duration(Duration::from_secs(90)), "1m30s");
    assert_eq!(format::human_duration(Duration::from_secs(3 * 86_400 + 4 * 3600 + 5)), "3d4h");
}

#[test]
fn units_humanize_values() {
    assert_eq!(Unit::Ratio.humanize(0.1), "10%");
    assert_eq!(Unit::Ratio.humanize(0.99953), "99.95%");
    assert_eq!(Unit::Seconds.humanize(0.4975), "497.5ms");
    assert_eq!(Unit::Seconds.humanize(2.5), "2.5s");
    assert_eq!(Unit::Seconds.humanize(0.000_25), "250µs");
    assert_eq!(Unit::Bytes.humanize(536_870_912.0), "512MiB");
    assert_eq!(Unit::Bytes.humanize(1536.0), "1.5KiB");
    assert_eq!(Unit::PerSecond.humanize(12.345), "12.35/s");
    assert_eq!(Unit::Cores.humanize(0.25), "0.25 cores");
}

// --- catalog ----------------------------------------------------------------------------------

#[test]
fn error_rate_renders_with_the_selector_and_window() {
    let catalog = SignalCatalog::builtin();
    let signal = catalog.get("error_rate").expect("error_rate is built in");
    let selector = promql::matcher("service", "payments-api");
    let values = TemplateValues { selector: &selector, window: "5m", aggregation: Aggregation::Sum };
    assert_eq!(
        catalog::render(&signal.conventions[0].template, values),
        "(sum(rate(http_requests_total{service=\"payments-api\",code=~\"5..\"}[5m]) \
         or rate(http_requests_total{service=\"payments-api\",status=~\"5..\"}[5m])) or vector(0)) \
         / sum(rate(http_requests_total{service=\"payments-api\"}[5m]))"
    );
    assert_eq!(
        catalog::render(&signal.conventions[1].template, values),
        "(sum(rate(http_server_request_duration_seconds_count{service=\"payments-api\",http_response_status_code=~\"5..\"}[5m])) \
         or vector(0)) / sum(rate(http_server_request_duration_seconds_count{service=\"payments-api\"}[5m]))"
    );
}

#[test]
fn latency_and_aggregated_signals_render() {
    let catalog = SignalCatalog::builtin();
    let values = TemplateValues { selector: "job=\"api\"", window: "1m", aggregation: Aggregation::Max };
    let p99 = catalog.get("latency_p99").expect("latency_p99");
    assert_eq!(
        catalog::render(&p99.conventions[0].template, values),
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{job=\"api\"}[1m])))"
    );
    assert!(catalog::render(&p99.conventions[2].template, values).ends_with(") / 1000"));
    let cpu = catalog.get("cpu").expect("cpu");
    assert_eq!(
        catalog::render(&cpu.conventions[0].template, values),
        "max(sum by (instance, pod) (rate(container_cpu_usage_seconds_total{job=\"api\",container!=\"\",container!=\"POD\"}[1m])))"
    );
    assert!(cpu.takes_aggregation());
    assert!(!p99.takes_aggregation());
    assert!(!catalog.get("error_rate").expect("error_rate").takes_aggregation());
    assert_eq!(catalog.get("saturation").expect("saturation").default_aggregation, Aggregation::Max);
}

#[test]
fn every_builtin_convention_selects_the_service_and_names_its_metrics() {
    let catalog = SignalCatalog::builtin();
    assert_eq!(
        catalog.names(),
        [
            "request_rate",
            "error_rate",
            "latency_p50",
            "latency_p95",
            "latency_p99",
            "cpu",
            "memory",
            "saturation",
            "availability"
        ]
    );
    for signal in catalog.signals() {
        for convention in &signal.conventions {
            assert!(convention.template.contains(catalog::SELECTOR), "{} {}", signal.name, convention.name);
            assert!(!convention.metrics.is_empty(), "{} {}", signal.name, convention.name);
            let rendered = catalog::render(
                &convention.template,
                TemplateValues { selector: "service=\"x\"", window: "5m", aggregation: Aggregation::Sum },
            );
            assert!(!rendered.contains("{{") && !rendered.contains("$"), "{rendered}");
        }
    }
    let metrics = |name: &str, index: usize| catalog.get(name).expect(name).conventions[index].metrics.clone();
    assert_eq!(metrics("error_rate", 0), ["http_requests_total"]);
    assert_eq!(metrics("latency_p50", 1), ["http_server_request_duration_seconds_bucket"]);
    assert_eq!(
        metrics("saturation", 0),
        ["container_cpu_usage_seconds_total", "container_spec_cpu_quota", "container_spec_cpu_period"]
    );
    assert_eq!(metrics("memory", 1), ["process_resident_memory_bytes"]);
    assert_eq!(metrics("availability", 3), ["up"]);
}

#[test]
fn configured_signals_override_and_add() {
    let config: MetricsCatalogConfig = serde_json::from_value(json!({
        "signals": {
            "error_rate": {"queries": ["sum(rate(grpc_server_handled_total{{{selector}},grpc_code!=\"OK\"}[{{window}}])) / sum(rate(grpc_server_handled_total{{{selector}}}[{{window}}]))"]},
            "queue_depth": {"description": "jobs waiting", "unit": "none", "queries": ["{{agg}}(queue_depth{{{selector}}})"]},
            "cpu": {"replace": true, "queries": ["sum(rate(my_cpu_seconds{{{selector}}}[{{window}}]))"]}
        }
    }))
    .expect("config parses");
    let catalog = SignalCatalog::from_config(&config).expect("catalog builds");
    let error_rate = catalog.get("error_rate").expect("error_rate");
    assert_eq!(error_rate.conventions[0].name, "configured-1");
    assert_eq!(error_rate.conventions[0].metrics, ["grpc_server_handled_total"]);
    assert_eq!(error_rate.conventions.len(), 4, "built-ins stay after the configured query");
    let cpu = catalog.get("cpu").expect("cpu");
    assert_eq!(cpu.conventions.len(), 1);
    assert!(!cpu.takes_aggregation());
    let queue = catalog.get("queue_depth").expect("new signal");
    assert_eq!(queue.unit, Unit::None);
    assert!(queue.takes_aggregation());
    assert_eq!(catalog.names().last(), Some(&"queue_depth"));
}

#[test]
fn configured_signals_are_checked() {
    let check = |signals: Value, expect: &str| {
        let config: MetricsCatalogConfig =
            serde_json::from_value(json!({ "signals": signals })).expect("config parses");
        let error = SignalCatalog::from_config(&config).expect_err("should be refused").to_string();
        assert!(error.contains(expect), "{error}");
    };
    check(json!({"x": {"unit": "none", "queries": ["up{{{selector}}}"]}}), "needs a description");
    check(json!({"x": {"description": "d", "queries": ["up{{{selector}}}"]}}), "needs a unit");
    check(json!({"x": {"description": "d", "unit": "none", "queries": ["up"]}}), "has no {{selector}}");
    check(json!({"Bad-Name": {"description": "d", "unit": "none", "queries": ["up{{{selector}}}"]}}), "lowercase");
    check(json!({"cpu": {"replace": true}}), "at least one query");
    let unknown = serde_json::from_value::<SignalOverride>(json!({"query": "up"}));
    assert!(unknown.is_err(), "unknown keys are refused");
}

// --- promql text ------------------------------------------------------------------------------

#[test]
fn label_values_are_quoted_for_promql() {
    assert_eq!(promql::quote("payments-api"), "\"payments-api\"");
    assert_eq!(promql::quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    assert_eq!(promql::matcher("service", "x"), "service=\"x\"");
}

#[test]
fn series_print_compactly_without_common_labels() {
    let a = labels(&[("__name__", "http_requests_total"), ("code", "200"), ("service", "api")]);
    let b = labels(&[("__name__", "http_requests_total"), ("code", "500"), ("service", "api")]);
    assert_eq!(promql::format_series(&a, &Labels::new()), "http_requests_total{code=\"200\",service=\"api\"}");
    let common = promql::common_labels([&a, &b]);
    assert_eq!(common, labels(&[("__name__", "http_requests_total"), ("service", "api")]));
    assert_eq!(promql::format_series(&a, &common), "{code=\"200\"}");
    assert_eq!(promql::format_series(&labels(&[("__name__", "up")]), &Labels::new()), "up");
    assert_eq!(promql::format_series(&Labels::new(), &Labels::new()), "{}");
    assert!(promql::common_labels([&a]).is_empty(), "one series keeps all its labels");
}

#[test]
fn selected_metrics_are_found_outside_strings_and_braces() {
    assert_eq!(
        promql::selected_metrics(
            "sum(rate(a_total{x=\"b{c}\"}[5m])) / on (job) group_left b_info{y=~\"z\"} + c:rule{}"
        ),
        ["a_total", "b_info", "c:rule"]
    );
    assert_eq!(promql::selected_metrics("rate(x{a=\"1\"}[1m]) + rate(x{a=\"2\"}[1m])"), ["x"]);
    assert!(promql::selected_metrics("vector(1) + 5m").is_empty());
}

#[test]
fn thresholds_split_at_the_last_top_level_comparison() {
    let check = |expr: &str, measured: &str, comparison: Comparison, value: f64| {
        let threshold = promql::split_threshold(expr).unwrap_or_else(|| panic!("no threshold in {expr}"));
        assert_eq!(threshold.measured, measured, "{expr}");
        assert_eq!(threshold.comparison, comparison, "{expr}");
        assert_eq!(threshold.value, value, "{expr}");
    };
    check(
        "sum(rate(http_requests_total{code=~\"5..\"}[1m])) by (service) / sum(rate(http_requests_total[1m])) by (service) > 0.05",
        "sum(rate(http_requests_total{code=~\"5..\"}[1m])) by (service) / sum(rate(http_requests_total[1m])) by (service)",
        Comparison::Greater,
        0.05,
    );
    // As Prometheus prints it in /api/v1/rules.
    check(
        "sum by (service) (rate(http_requests_total{code=~\"5..\"}[1m])) / sum by (service) (rate(http_requests_total[1m])) > 0.05",
        "sum by (service) (rate(http_requests_total{code=~\"5..\"}[1m])) / sum by (service) (rate(http_requests_total[1m]))",
        Comparison::Greater,
        0.05,
    );
    check("up == 0", "up", Comparison::Equal, 0.0);
    check(
        "node_filesystem_avail_bytes{mountpoint=\">\"} <= 1e9",
        "node_filesystem_avail_bytes{mountpoint=\">\"}",
        Comparison::LessOrEqual,
        1e9,
    );
    check("(avg(x) >= 0x10)", "avg(x)", Comparison::GreaterOrEqual, 16.0);
    check("count(up{job=\"a\"} > 0) < 3", "count(up{job=\"a\"} > 0)", Comparison::Less, 3.0);
    check(
        "0.9 < histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))",
        "histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))",
        Comparison::Greater,
        0.9,
    );
    check("x != -1", "x", Comparison::NotEqual, -1.0);
    check("x > (0.5) # a comment with > 3", "x", Comparison::Greater, 0.5);
    check("rate(errors[5m]) > +Inf", "rate(errors[5m])", Comparison::Greater, f64::INFINITY);
}

#[test]
fn thresholds_are_declined_when_ambiguous() {
    for expr in [
        "up",
        "x > 1 and y > 2",
        "x > bool 1",
        "x > y",
        "absent(up{job=\"a\"})",
        "x > 1 unless on (job) maintenance",
        "a > e",
    ] {
        assert_eq!(promql::split_threshold(expr), None, "{expr}");
    }
}

#[test]
fn numbers_parse_like_promql_literals() {
    assert_eq!(promql::parse_number("0.05"), Some(0.05));
    assert_eq!(promql::parse_number("-2"), Some(-2.0));
    assert_eq!(promql::parse_number("1e-3"), Some(0.001));
    assert_eq!(promql::parse_number("0xff"), Some(255.0));
    assert!(promql::parse_number("NaN").is_some_and(f64::is_nan));
    assert_eq!(promql::parse_number("inf_total"), None);
    assert_eq!(promql::parse_number("up"), None);
}

// --- series -----------------------------------------------------------------------------------

#[test]
fn stats_skip_non_finite_values() {
    let stats = series::stats(&points(&[1.0, f64::NAN, 3.0, f64::INFINITY, 2.0])).expect("stats");
    assert_eq!((stats.n_points, stats.min, stats.max, stats.avg, stats.last), (3, 1.0, 3.0, 2.0, 2.0));
    assert_eq!(stats.last_time, 1240.0);
    assert_eq!(series::stats(&points(&[f64::NAN])), None);
}

#[test]
fn trends_compare_first_and_last_thirds_with_a_tolerance() {
    let direction =
        |values: &[f64]| series::trend(&points(values), series::TREND_TOLERANCE).map(|trend| trend.direction);
    assert_eq!(direction(&[1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0]), Some(Direction::Rising));
    assert_eq!(direction(&[3.0, 3.0, 2.0, 2.0, 1.0, 1.0]), Some(Direction::Falling));
    assert_eq!(direction(&[0.1, 0.102, 0.099, 0.1, 0.101, 0.1]), Some(Direction::Flat), "jitter is not a trend");
    assert_eq!(direction(&[0.0, 0.0, 0.0]), Some(Direction::Flat));
    assert_eq!(direction(&[0.0, 0.0, 1.0]), Some(Direction::Rising));
    assert_eq!(direction(&[5.0]), None);
    let noise = series::trend(&points(&[0.1, 0.1, 0.09999999999999999]), series::TREND_TOLERANCE).expect("trend");
    assert_eq!(noise.describe(), "flat");
    let trend = series::trend(&points(&[1.0, 1.0, 2.0]), series::TREND_TOLERANCE).expect("trend");
    assert_eq!(trend.relative, Some(1.0));
    assert_eq!(trend.describe(), "rising (+100%)");
    let from_zero = series::trend(&points(&[0.0, 0.5]), series::TREND_TOLERANCE).expect("trend");
    assert_eq!(from_zero.describe(), "rising (+0.5)");
}

#[test]
fn downsampling_keeps_ends_and_peaks_within_the_limit() {
    let mut values: Vec<f64> = (0..600).map(|index| (index % 7) as f64 * 0.01).collect();
    values[321] = 50.0;
    let series = points(&values);
    let sampled = series::downsample(&series, 60);
    assert_eq!(sampled.len(), 60);
    assert_eq!(sampled.first(), series.first());
    assert_eq!(sampled.last(), series.last());
    assert!(sampled.iter().any(|point| point.value == 50.0), "the spike survives");
    assert!(sampled.windows(2).all(|pair| pair[0].time < pair[1].time), "times stay ordered");

    for n_points in 0..130 {
        let series = points(&(0..n_points).map(|index| ((index * 37) % 11) as f64).collect::<Vec<_>>());
        for max_points in 0..70 {
            let sampled = series::downsample(&series, max_points);
            assert_eq!(sampled.len(), n_points.min(max_points), "{n_points} into {max_points}");
        }
    }

    let short = points(&[1.0, f64::NAN, 2.0]);
    assert_eq!(series::downsample(&short, 60).len(), 2, "non-finite points are dropped");
    assert_eq!(series::downsample(&series, 2).len(), 2);
    assert_eq!(series::downsample(&series, 1).len(), 1);
}

// --- API responses ----------------------------------------------------------------------------

#[test]
fn parses_query_results_of_every_type() {
    let vector = br#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"__name__":"up","job":"api","instance":"10.0.0.1:8080"},"value":[1714567890.123,"1"]},
        {"metric":{"__name__":"up","job":"api","instance":"10.0.0.2:8080"},"value":[1714567890.123,"0"]}]}}"#;
    let Decoded::Answer(answer) = decode::<QueryResult>(vector) else { panic!("vector parses") };
    let QueryResult::Vector(samples) = answer.data else { panic!("a vector") };
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[1].value.as_ref().map(|raw| raw.point().value), Some(0.0));

    let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{"service":"payments-api"},"values":[[1714567800,"0.1"],[1714567860,"NaN"],[1714567920,"+Inf"]]}]},
        "warnings":["partial response"]}"#;
    let Decoded::Answer(answer) = decode::<QueryResult>(matrix) else { panic!("matrix parses") };
    assert_eq!(answer.warnings, ["partial response"]);
    let QueryResult::Matrix(all_series) = answer.data else { panic!("a matrix") };
    let values: Vec<f64> = all_series[0].points().iter().map(|point| point.value).collect();
    assert_eq!(values[0], 0.1);
    assert!(values[1].is_nan());
    assert_eq!(values[2], f64::INFINITY);

    let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1714567890,"42"]}}"#;
    assert!(
        matches!(decode::<QueryResult>(scalar), Decoded::Answer(answer) if answer.data == QueryResult::Scalar(super::RawSample(1714567890.0, "42".to_string())))
    );
    let string = br#"{"status":"success","data":{"resultType":"string","result":[1714567890,"hello"]}}"#;
    assert!(
        matches!(decode::<QueryResult>(string), Decoded::Answer(answer) if matches!(answer.data, QueryResult::String(_)))
    );

    // A native histogram sample has `histogram` instead of `value`; it must not break the rest.
    let histogram = br#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"__name__":"h"},"histogram":[1714567890,{"count":"3","sum":"1","buckets":[]}]}]}}"#;
    let Decoded::Answer(answer) = decode::<QueryResult>(histogram) else { panic!("histogram parses") };
    assert!(matches!(&answer.data, QueryResult::Vector(samples) if samples[0].value.is_none()));
}

#[test]
fn parses_api_errors_into_backend_errors_with_a_hint() {
    let body = br#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:14: parse error: unexpected right parenthesis ')'"}"#;
    let Decoded::Api { error_type, error } = decode::<QueryResult>(body) else { panic!("an API error") };
    let error = PrometheusError::Api { name: "prod-eu".to_string(), error_type, error: error.unwrap_or_default() };
    match error.into_tool_error() {
        ToolError::Backend(message) => {
            assert!(
                message.starts_with("prometheus prod-eu rejected the query (bad_data): invalid parameter"),
                "{message}"
            );
            assert!(message.contains("1:14: parse error"), "{message}");
            assert!(message.contains("fix the PromQL"), "{message}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    let timeout = PrometheusError::Api {
        name: "p".to_string(),
        error_type: "unavailable".to_string(),
        error: "too many queries".to_string(),
    };
    assert!(matches!(timeout.into_tool_error(), ToolError::Unavailable(_)));
    assert!(matches!(decode::<QueryResult>(b"<html>bad gateway</html>"), Decoded::Unreadable(_)));
    assert!(matches!(decode::<QueryResult>(br#"{"status":"success"}"#), Decoded::Unreadable(_)));
}

#[test]
fn parses_rules_metadata_and_label_values() {
    let rules = br#"{"status":"success","data":{"groups":[{"name":"payments","file":"/etc/prometheus/rules.yml",
        "rules":[{"state":"firing","name":"HighErrorRate",
          "query":"sum by (service) (rate(http_requests_total{code=~\"5..\"}[1m])) / sum by (service) (rate(http_requests_total[1m])) > 0.05",
          "duration":0,"labels":{"severity":"critical"},
          "annotations":{"summary":"payments-api errors","runbook_url":"https://runbooks.example.com/errors"},
          "alerts":[{"labels":{"alertname":"HighErrorRate","service":"payments-api","severity":"critical"},
            "annotations":{"summary":"payments-api errors"},"state":"firing","activeAt":"2024-05-01T12:00:00.5Z","value":"1e-01"}],
          "health":"ok","evaluationTime":0.0004,"lastEvaluation":"2024-05-01T12:05:00Z","type":"alerting"},
          {"name":"job:up:sum","query":"sum by (job) (up)","health":"ok","type":"recording"}],
        "interval":1,"limit":0,"evaluationTime":0.0005,"lastEvaluation":"2024-05-01T12:05:00Z"}]}}"#;
    let Decoded::Answer(answer) = decode::<RulesData>(rules) else { panic!("rules parse") };
    let group = &answer.data.groups[0];
    assert_eq!(group.interval, Some(1.0));
    let rule = &group.rules[0];
    assert_eq!((rule.kind.as_str(), rule.name.as_str(), rule.duration), ("alerting", "HighErrorRate", 0.0));
    assert_eq!(rule.alerts[0].value.as_deref(), Some("1e-01"));
    assert_eq!(series::parse_value("1e-01"), 0.1);
    assert_eq!(group.rules[1].kind, "recording");

    let metadata =
        br#"{"status":"success","data":{"http_requests_total":[{"type":"counter","help":"Requests served.","unit":""}],
        "process_resident_memory_bytes":[{"type":"gauge","help":"Resident memory size in bytes.","unit":""}]}}"#;
    let Decoded::Answer(answer) = decode::<std::collections::HashMap<String, Vec<MetricMetadata>>>(metadata) else {
        panic!("metadata parses")
    };
    assert_eq!(answer.data["http_requests_total"][0].kind, "counter");

    let names = br#"{"status":"success","data":["http_requests_total","up"]}"#;
    assert!(
        matches!(decode::<Vec<String>>(names), Decoded::Answer(answer) if answer.data == ["http_requests_total", "up"])
    );
}

// --- tools: pure parts ------------------------------------------------------------------------

#[test]
fn steps_windows_and_points_scale_with_the_period() {
    let hour = Duration::from_secs(3600);
    assert_eq!(tools::step_for(hour, 60), 60);
    assert_eq!(tools::step_for(Duration::from_secs(300), 60), 5);
    assert_eq!(tools::step_for(Duration::from_secs(10), 60), 1);
    assert_eq!(format::promql_duration(tools::rate_window(hour)), "5m");
    assert_eq!(format::promql_duration(tools::rate_window(Duration::from_secs(86_400))), "2h");
    assert_eq!(format::promql_duration(tools::rate_window(Duration::from_secs(300))), "1m");
    assert_eq!(tools::max_points(OutputBudget::default()), 60);
    assert_eq!(tools::max_points(OutputBudget { max_bytes: 4000 }), 16);
    assert_eq!(tools::max_points(OutputBudget { max_bytes: 100 }), 10);
    assert!(tools::parse_period("period", "30s").is_err());
    assert!(tools::parse_period("period", "100d").is_err());
    assert!(tools::parse_period("period", "1h").is_ok());
}

#[test]
fn list_patterns_become_selectors() {
    assert_eq!(tools::list_selector("http"), "{__name__=~\"(?i).*(?:http).*\"}");
    assert_eq!(tools::list_selector("^http_.*_total$"), "{__name__=~\"(?i).*(?:^http_.*_total$).*\"}");
    assert_eq!(tools::list_selector("\\d+"), "{__name__=~\"(?i).*(?:\\\\d+).*\"}");
    assert_eq!(tools::list_selector("{job=\"api\"}"), "{job=\"api\"}");
}

#[test]
fn firing_history_counts_episodes_and_duration() {
    let at = |times: &[f64]| times.iter().map(|time| Point { time: *time, value: 1.0 }).collect::<Vec<_>>();
    let firing = tools::firing_history(&at(&[100.0, 160.0, 220.0, 520.0, 580.0]), 60, 580.0).expect("fired");
    assert_eq!(firing.first_seen, 100.0);
    assert_eq!(firing.last_seen, 580.0);
    assert_eq!(firing.firing_seconds, 300.0);
    assert_eq!(firing.episodes, 2);
    assert!(firing.firing_now);
    let resolved = tools::firing_history(&at(&[100.0]), 60, 580.0).expect("fired");
    assert!(!resolved.firing_now);
    assert_eq!(tools::firing_history(&[], 60, 0.0), None);
}

#[test]
fn a_range_result_with_many_series_is_summarised_per_series() {
    let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{"__name__":"x","job":"api","code":"200"},"values":[[0,"1"],[60,"1"],[120,"2"],[180,"2"],[240,"3"],[300,"3"]]},
        {"metric":{"__name__":"x","job":"api","code":"500"},"values":[[0,"5"],[60,"5"],[120,"5"]]}]}}"#;
    let Decoded::Answer(answer) = decode::<QueryResult>(body) else { panic!("parses") };
    let QueryResult::Matrix(all_series) = answer.data else { panic!("a matrix") };
    let output = tools::matrix_output(all_series, 60, Unit::None);
    assert_eq!(output.columns, ["series", "last", "min", "avg", "max", "trend"]);
    assert_eq!(output.rows[0].cells, ["{code=\"200\"}", "3", "1", "2", "3", "rising (+200%)"]);
    assert_eq!(output.rows[1].cells[5], "flat");
    assert_eq!(output.rows[0].item["points"].as_array().map(Vec::len), Some(6));
    assert_eq!(output.fields["common_labels"], json!({"__name__": "x", "job": "api"}));
    let rendered = output.render(0, OutputBudget::default());
    assert!(rendered.text.starts_with("2 series\ncommon labels: x{job=\"api\"}\nseries"), "{}", rendered.text);
}

// --- config, clients, specs -------------------------------------------------------------------

fn config(url: &str) -> PrometheusConfig {
    serde_json::from_value(json!({ "url": url })).expect("config parses")
}

#[test]
fn config_has_defaults_and_refuses_unknown_keys() {
    let parsed = config("http://prometheus:9090");
    assert_eq!(parsed.environment, "default");
    assert_eq!(parsed.timeout_seconds, 10);
    assert_eq!(parsed.service_labels, ["service", "job", "app", "service_name"]);
    let unknown = serde_json::from_value::<PrometheusConfig>(json!({"url": "http://p", "timeout": 5}));
    assert!(unknown.is_err_and(|error| error.to_string().contains("unknown field `timeout`")));
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let mut parsed = config("http://user:hunter2@prometheus:9090/prom/");
    parsed.headers.insert("X-Api-Key".to_string(), "key-123".to_string());
    parsed.bearer_token = Some("inline-token".to_string());
    let shown = format!("{parsed:?}");
    assert!(!shown.contains("key-123") && !shown.contains("inline-token"), "{shown}");
    let client = PrometheusClient::new("prod-eu", &parsed, Some("s3cret-token".to_string())).expect("client builds");
    let shown = format!("{client:?}");
    assert!(!shown.contains("s3cret") && !shown.contains("hunter2") && !shown.contains("key-123"), "{shown}");
    assert_eq!(client.url(), "http://user:***@prometheus:9090/prom");
}

#[test]
fn bad_client_configuration_is_refused_with_the_instance_named() {
    let error = PrometheusClient::new("prod-eu", &config("prometheus:9090"), None).expect_err("no scheme");
    assert!(error.to_string().starts_with("prometheus prod-eu: url"), "{error}");
    let mut zero = config("http://p");
    zero.timeout_seconds = 0;
    assert!(PrometheusClient::new("p", &zero, None).is_err());
    let mut labels = config("http://p");
    labels.service_labels = vec!["service.name".to_string()];
    assert!(PrometheusClient::new("p", &labels, None).is_err());
    assert!(PrometheusClient::new("p", &config("http://p"), Some("bad\ntoken".to_string())).is_err());
}

fn offline_tools() -> Vec<Arc<dyn opsgate_core::Tool>> {
    // Port 9 (discard) on loopback: nothing these tests call may reach it.
    let client = PrometheusClient::new("local", &config("http://127.0.0.1:9"), None).expect("client builds");
    prometheus_tools(Arc::new(PrometheusClients::new(vec![client])), SignalCatalog::builtin())
}

#[test]
fn tool_specs_are_valid_and_short() {
    let tools = offline_tools();
    let names: Vec<&str> = tools.iter().map(|tool| tool.spec().name.as_str()).collect();
    assert_eq!(names, ["get_service_metrics", "query_metrics", "list_metrics", "get_alert_history"]);
    let mut total = 0;
    for tool in &tools {
        let spec = tool.spec();
        assert!(opsgate_core::is_valid_tool_name(&spec.name));
        assert!(spec.description.len() <= 200, "{}: {} bytes", spec.name, spec.description.len());
        assert_eq!(spec.effect, opsgate_core::Effect::Read);
        assert_eq!(spec.target_kind.as_deref(), Some("prometheus"));
        assert_eq!(spec.input_schema["type"], "object");
        assert_eq!(spec.input_schema["additionalProperties"], false, "{}", spec.name);
        assert!(!spec.input_schema.contains_key("$schema") && !spec.input_schema.contains_key("title"));
        let output = spec.output_schema.as_ref().expect("an output schema");
        assert_eq!(output["type"], "object");
        total += spec.description.len()
            + Value::Object(spec.input_schema.clone()).to_string().len()
            + Value::Object(output.clone()).to_string().len();
    }
    // What these four tools add to every tools/list.
    assert!(total < 4500, "the prometheus tools take {total} bytes of tools/list");

    let metrics = &tools[0].spec().input_schema["properties"]["metric"];
    assert_eq!(metrics["enum"][1], "error_rate");
    assert!(metrics["description"].as_str().is_some_and(|text| text.contains("error_rate: share of 5xx")));
    assert_eq!(tools[0].spec().input_schema["required"], json!(["service", "metric"]));
    assert_eq!(tools[0].spec().input_schema["properties"]["period"]["default"], "1h");
    // Optional arguments are plain: no null variants, no $defs to chase.
    assert_eq!(
        tools[0].spec().input_schema["properties"]["aggregation"],
        json!({"type": "string", "enum": ["sum", "avg", "max", "min"],
               "description": "How instances combine, for request_rate, cpu, memory, saturation"})
    );
    assert_eq!(tools[1].spec().input_schema["properties"]["period"]["type"], "string");
    assert!(
        !tools[0].spec().input_schema.contains_key("$defs")
            && !tools[0].spec().input_schema.contains_key("description")
    );
}

async fn call(tool: &Arc<dyn opsgate_core::Tool>, arguments: Value) -> Result<opsgate_core::ToolOutput, ToolError> {
    let context = CallContext::new(None, OutputBudget::default(), Arc::new(NoClient));
    let Value::Object(arguments) = arguments else { panic!("arguments are an object") };
    tool.call(context, arguments).await
}

#[tokio::test]
async fn bad_arguments_are_refused_before_any_request() {
    let tools = offline_tools();
    let invalid = |result: Result<opsgate_core::ToolOutput, ToolError>| match result {
        Err(ToolError::InvalidArguments(message)) => message,
        other => panic!("expected invalid arguments, got {other:?}"),
    };
    let message = invalid(call(&tools[0], json!({"service": "api", "metric": "errors"})).await);
    assert!(message.contains("unknown metric \"errors\"") && message.contains("error_rate, latency_p50"), "{message}");
    let message =
        invalid(call(&tools[0], json!({"service": "api", "metric": "error_rate", "aggregation": "max"})).await);
    assert!(message.contains("takes no aggregation"), "{message}");
    let message = invalid(call(&tools[0], json!({"service": "api", "metric": "cpu", "period": "1x"})).await);
    assert!(message.contains("unknown unit"), "{message}");
    let message = invalid(call(&tools[0], json!({"service": "api", "metric": "cpu", "extra": 1})).await);
    assert!(message.contains("unknown field `extra`"), "{message}");
    invalid(call(&tools[0], json!({"service": " ", "metric": "cpu"})).await);
    invalid(call(&tools[1], json!({"promql": "up", "step": "1m"})).await);
    invalid(call(&tools[1], json!({"promql": "up", "period": "90d", "step": "1s"})).await);
    invalid(call(&tools[3], json!({"period": "1y"})).await);
}
