//! The cost of one policy decision with the default bundle, as the pipeline pays it for the
//! benchmark's call: evaluated by regorus each time (a policy that reads per-call facts such as
//! `input.time`), and from the decision cache (the default bundle).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use opsgate_core::{Decision, Effect, Principal, PrincipalKind};
use opsgate_policy::{Annotations, Limits, Policy, PolicyInput, ToolFacts};

/// Decisions timed in each mode.
pub const N_DECISIONS: usize = 20_000;

#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50: Duration,
    pub p99: Duration,
}

impl Percentiles {
    /// Of timings taken one at a time, by nearest rank (`load::percentile`), in nanoseconds.
    pub fn of(samples: Vec<Duration>) -> Percentiles {
        let mut nanos: Vec<u64> =
            samples.into_iter().map(|sample| u64::try_from(sample.as_nanos()).unwrap_or(u64::MAX)).collect();
        nanos.sort_unstable();
        let at = |fraction| Duration::from_nanos(crate::load::percentile(&nanos, fraction));
        Percentiles { p50: at(0.50), p99: at(0.99) }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PolicyCost {
    pub evaluated: Percentiles,
    pub cached: Percentiles,
}

pub fn measure() -> Result<PolicyCost> {
    let policy = Policy::default_bundle().context("compiling the default policy bundle")?;
    if policy.caching().is_none() {
        bail!("the default bundle is expected to be cacheable");
    }
    let principal = Principal { id: "key:bench".into(), kind: PrincipalKind::ApiKey, roles: vec!["operator".into()] };
    let mut arguments = serde_json::Map::new();
    arguments.insert("text".into(), serde_json::json!("bench connection 0"));
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let input = PolicyInput {
        version: opsgate_policy::decide::INPUT_VERSION,
        principal: &principal,
        tool: ToolFacts { name: "echo", effect: Effect::Read, server: None, annotations: Annotations::default() },
        arguments: &arguments,
        target: None,
        blast_radius: None,
        limits: Limits::default(),
        read_only: false,
        time: &time,
    };
    let evaluated = time_each(|| policy.evaluate(&input))?;
    let cached = time_each(|| policy.decide(&input))?;
    Ok(PolicyCost { evaluated, cached })
}

fn time_each(mut decide: impl FnMut() -> Decision) -> Result<Percentiles> {
    let mut samples = Vec::with_capacity(N_DECISIONS);
    for _ in 0..N_DECISIONS {
        let started = Instant::now();
        let decision = std::hint::black_box(decide());
        samples.push(started.elapsed());
        if decision != Decision::Allow {
            bail!("the default bundle did not allow the benchmark's read: {decision:?}");
        }
    }
    Ok(Percentiles::of(samples))
}
