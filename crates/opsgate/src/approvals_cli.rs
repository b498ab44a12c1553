//! `opsgate approvals list | show | approve | reject`: humans deciding approval requests from a
//! terminal, as the local OS user with the roles `[identity] local_roles` gives it. Approving the
//! last required approval runs the call in this process, through the same pipeline.

use std::process::ExitCode;

use opsgate_store::{Approval, ApprovalStatus};

use crate::app::App;
use crate::cli::{ApprovalsCommand, local_principal};
use crate::config::{ProcessEnv, RuntimeConfig};

pub async fn run(config: RuntimeConfig, command: ApprovalsCommand) -> anyhow::Result<ExitCode> {
    let app = App::build(&config, &ProcessEnv).await?;
    let result = dispatch(&app, &config, command).await;
    app.finish().await;
    result
}

async fn dispatch(app: &App, config: &RuntimeConfig, command: ApprovalsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ApprovalsCommand::List { status, json } => {
            let status = match status.as_deref() {
                None | Some("all") => None,
                Some(text) => Some(parse_status(text)?),
            };
            app.store.expire_approvals(&opsgate_server::pipeline::now_rfc3339()).await?;
            let approvals = app.store.approvals(status, 200).await?;
            if json {
                for approval in &approvals {
                    println!("{}", serde_json::to_string(&redacted(approval))?);
                }
            } else if approvals.is_empty() {
                println!("no approval requests");
            } else {
                println!(
                    "{:<36}  {:<9}  {:<16}  {:<20}  {:<12}  expires",
                    "id", "status", "tool", "requester", "target"
                );
                for approval in &approvals {
                    let request = &approval.request;
                    println!(
                        "{:<36}  {:<9}  {:<16}  {:<20}  {:<12}  {}",
                        request.id,
                        approval.status.as_str(),
                        request.tool,
                        request.requester,
                        request.target.as_deref().unwrap_or("-"),
                        request.expires_at
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Show { id, json } => {
            let Some(approval) = app.store.approval(&id).await? else {
                anyhow::bail!("no approval request {id}");
            };
            let shown = redacted(&approval);
            if json {
                println!("{}", serde_json::to_string_pretty(&shown)?);
            } else {
                print_approval(&shown);
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Approve { id, comment } => decide(app, config, &id, true, comment.as_deref()).await,
        ApprovalsCommand::Reject { id, comment } => decide(app, config, &id, false, comment.as_deref()).await,
    }
}

/// Records the decision as the local user; when it completes the approvals, the call runs here
/// and its outcome is printed. A refused decision exits 1 with the reason (and is audited).
async fn decide(
    app: &App,
    config: &RuntimeConfig,
    id: &str,
    approve: bool,
    comment: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let principal = local_principal(config);
    match app.mcp.pipeline.decide_approval(&principal, id, approve, comment).await {
        Ok(status) => {
            println!("{id}: {} by {}", status.as_str(), principal.id);
            if let Some(approval) = app.store.approval(id).await?
                && let Some(text) =
                    approval.result.as_ref().and_then(|result| result.get("text")).and_then(|text| text.as_str())
            {
                println!("{text}");
            }
            if let Some(error) = app.store.approval(id).await?.and_then(|approval| approval.error) {
                println!("error: {error}");
            }
            Ok(if status == ApprovalStatus::Failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Err(error) => {
            eprintln!("opsgate: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn parse_status(text: &str) -> anyhow::Result<ApprovalStatus> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|_| {
        anyhow::anyhow!(
            "unknown status {text:?}; use pending, approved, rejected, expired, executing, executed, failed or all"
        )
    })
}

/// Secrets in stored arguments never reach a terminal.
fn redacted(approval: &Approval) -> Approval {
    let redactor = opsgate_policy::Redactor::new();
    let mut shown = approval.clone();
    if let Ok(mut arguments) = serde_json::from_str::<serde_json::Value>(&shown.request.arguments) {
        redactor.redact_value(&mut arguments);
        shown.request.arguments = opsgate_core::canonical::canonical_json(&arguments);
    }
    shown
}

fn print_approval(approval: &Approval) {
    let request = &approval.request;
    println!("approval   {}", request.id);
    println!("status     {}", approval.status.as_str());
    println!("tool       {}", request.tool);
    println!(
        "target     {} ({})",
        request.target.as_deref().unwrap_or("-"),
        request.environment.as_deref().unwrap_or("-")
    );
    println!("requester  {} (roles: {})", request.requester, request.requester_roles.join(", "));
    println!("arguments  {}", request.arguments);
    if let Some(summary) =
        request.plan.as_ref().and_then(|plan| plan.get("summary")).and_then(|summary| summary.as_str())
    {
        println!("plan       {summary}");
    }
    println!("why        {}", request.reason);
    println!("needs      {} approval(s) from: {}", request.approvals_required, request.approver_roles.join(", "));
    println!("created    {}", request.created_at);
    println!("expires    {}", request.expires_at);
    for decision in &approval.decisions {
        println!("decision   {} {} at {}", decision.principal, decision.decision, decision.decided_at);
    }
    if let Some(error) = &approval.error {
        println!("error      {error}");
    }
}
