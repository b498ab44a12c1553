//! `opsgate approvals list | show | approve | reject`: humans deciding approval requests from a
//! terminal, as the local OS user with the roles `[identity] local_roles` gives it. Approving the
//! last required approval runs the call in this process, through the same pipeline.

use std::process::ExitCode;

use opsgate_policy::Redactor;
use opsgate_server::approvals::{shown, status_filter};
use opsgate_store::{Approval, ApprovalStatus};
use serde_json::Value;

use crate::app::{App, open_store};
use crate::cli::{ApprovalsCommand, local_principal};
use crate::config::{ProcessEnv, RuntimeConfig};

pub async fn run(config: RuntimeConfig, command: ApprovalsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ApprovalsCommand::List { status, json } => {
            let status = status_filter(status.as_deref()).map_err(|message| anyhow::anyhow!(message))?;
            let store = open_store(&config).await?;
            store.expire_approvals(&opsgate_server::pipeline::now_rfc3339()).await?;
            let approvals = store.approvals(status, 200).await;
            store.close().await;
            print_list(approvals?, json)
        }
        ApprovalsCommand::Show { id, json } => {
            let store = open_store(&config).await?;
            let approval = store.approval(&id).await;
            store.close().await;
            let Some(approval) = approval? else {
                anyhow::bail!("no approval request {id}");
            };
            let approval = shown(approval, &Redactor::new());
            if json {
                println!("{}", serde_json::to_string_pretty(&approval)?);
            } else {
                print_approval(&approval);
            }
            Ok(ExitCode::SUCCESS)
        }
        // Deciding may run the call: that needs the whole app (tools, targets, policy, audit).
        ApprovalsCommand::Approve { id, comment } => decide(&config, &id, true, comment.as_deref()).await,
        ApprovalsCommand::Reject { id, comment } => decide(&config, &id, false, comment.as_deref()).await,
    }
}

fn print_list(approvals: Vec<Approval>, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        let redactor = Redactor::new();
        for approval in approvals {
            println!("{}", serde_json::to_string(&shown(approval, &redactor))?);
        }
    } else if approvals.is_empty() {
        println!("no approval requests");
    } else {
        println!("{:<36}  {:<9}  {:<16}  {:<20}  {:<12}  expires", "id", "status", "tool", "requester", "target");
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

/// Records the decision as the local user; when it completes the approvals, the call runs here
/// and its outcome is printed. A refused decision exits 1 with the reason (and is audited).
async fn decide(config: &RuntimeConfig, id: &str, approve: bool, comment: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut app = App::build(config, &ProcessEnv).await?;
    // A decision that completes the approvals runs the call here: a federated tool needs its
    // server connected first.
    if approve && let Ok(Some(approval)) = app.store.approval(id).await {
        app.reach_tool(&approval.request.tool, &ProcessEnv).await?;
    }
    let principal = local_principal(config);
    let decided = app.mcp.pipeline.decide_approval(&principal, id, approve, comment).await;
    let stored = match &decided {
        Ok(_) => app.store.approval(id).await,
        Err(_) => Ok(None),
    };
    app.finish().await;
    match decided {
        Ok(status) => {
            println!("{id}: {} by {}", status.as_str(), principal.id);
            if let Some(approval) = stored? {
                if let Some(text) =
                    approval.result.as_ref().and_then(|result| result.get("text")).and_then(Value::as_str)
                {
                    println!("{text}");
                }
                if let Some(error) = approval.error {
                    println!("error: {error}");
                }
            }
            Ok(if status == ApprovalStatus::Failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Err(error) => {
            eprintln!("opsgate: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
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
