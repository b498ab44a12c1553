//! Approval requests: durable rows that outlive the process, and the rules of deciding them.
//! Every rule that keeps an approval honest is checked here, inside the transaction that records
//! the decision, so the CLI, the HTTP API and any number of opsgate processes share them:
//! the approver is not the requester, holds a required role and counts once; a request is
//! decided only while pending and unexpired; it runs at most once (`claim`).

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{Store, StoreError, on_pool};

/// The longest id accepted: `apr_` and 32 hex digits.
const ID_PREFIX: &str = "apr_";

/// A new approval id.
pub fn new_approval_id() -> String {
    format!("{ID_PREFIX}{}", uuid::Uuid::new_v4().simple())
}

/// Whether `id` has the shape of an approval id; anything else is refused before any query.
pub fn is_valid_approval_id(id: &str) -> bool {
    id.strip_prefix(ID_PREFIX)
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f')))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
    Expired,
    Executing,
    Executed,
    Failed,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Executing => "executing",
            ApprovalStatus::Executed => "executed",
            ApprovalStatus::Failed => "failed",
        }
    }

    pub const ALL: [ApprovalStatus; 7] = [
        ApprovalStatus::Pending,
        ApprovalStatus::Approved,
        ApprovalStatus::Rejected,
        ApprovalStatus::Expired,
        ApprovalStatus::Executing,
        ApprovalStatus::Executed,
        ApprovalStatus::Failed,
    ];

    /// The status named `text`; the error lists the names there are.
    pub fn parse(text: &str) -> Result<ApprovalStatus, String> {
        ApprovalStatus::ALL.into_iter().find(|status| status.as_str() == text).ok_or_else(|| {
            let names: Vec<&str> = ApprovalStatus::ALL.iter().map(|status| status.as_str()).collect();
            format!("unknown status {text:?}; use one of {}", names.join(", "))
        })
    }

    /// No further decision or execution can change it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ApprovalStatus::Rejected | ApprovalStatus::Expired | ApprovalStatus::Executed | ApprovalStatus::Failed
        )
    }
}

/// What the pipeline stores when policy asks for approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewApproval {
    pub id: String,
    /// RFC 3339, UTC, milliseconds: text comparison orders them.
    pub created_at: String,
    pub expires_at: String,
    pub requester: String,
    pub requester_kind: String,
    pub requester_roles: Vec<String>,
    pub client: Option<String>,
    pub tool: String,
    pub target: Option<String>,
    pub environment: Option<String>,
    /// Canonical JSON of the exact arguments, unredacted: this is what will run.
    pub arguments: String,
    pub arguments_hash: String,
    pub plan: Option<serde_json::Value>,
    pub reason: String,
    pub approvals_required: u32,
    pub approver_roles: Vec<String>,
}

/// One human decision on a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    pub principal: String,
    pub roles: Vec<String>,
    /// `approve` or `reject`.
    pub decision: String,
    pub comment: Option<String>,
    pub decided_at: String,
}

/// A stored request with its decisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    #[serde(flatten)]
    pub request: NewApproval,
    pub status: ApprovalStatus,
    pub updated_at: String,
    pub decisions: Vec<ApprovalDecision>,
    /// The call's result once executed (the rendered output as JSON).
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
}

impl Approval {
    /// Principals who approved, in the order they did.
    pub fn approvers(&self) -> Vec<String> {
        self.decisions
            .iter()
            .filter(|decision| decision.decision == "approve")
            .map(|decision| decision.principal.clone())
            .collect()
    }
}

/// Why a decision was refused. Each names what was wrong, for the human who tried.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("{0:?} is not an approval id (they look like apr_ followed by 32 hex digits)")]
    MalformedId(String),
    #[error("no approval request {0}")]
    NotFound(String),
    #[error("approval request {id} is {status}, not pending: nothing was decided", status = status.as_str())]
    NotPending { id: String, status: ApprovalStatus },
    #[error("approval request {id} expired at {expires_at}: nothing was decided")]
    Expired { id: String, expires_at: String },
    #[error("{principal} requested {id} and cannot approve or reject their own request")]
    SelfApproval { id: String, principal: String },
    #[error("{principal} holds none of the roles that may decide {id} ({required})", required = required.join(", "))]
    MissingRole { id: String, principal: String, required: Vec<String> },
    #[error("{principal} has already decided {id}; each approver counts once")]
    AlreadyDecided { id: String, principal: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ApprovalError {
    fn from(error: sqlx::Error) -> Self {
        ApprovalError::Store(StoreError::Query(error))
    }
}

const COLUMNS: &str = "id, created_at, expires_at, updated_at, requester, requester_kind, requester_roles, client, \
     tool, target, environment, arguments, arguments_hash, plan, reason, approvals_required, approver_roles, status, \
     result, error";

fn json_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

fn parse_json<T: serde::de::DeserializeOwned>(column: &str, text: String) -> Result<T, sqlx::Error> {
    serde_json::from_str(&text)
        .map_err(|error| sqlx::Error::ColumnDecode { index: column.to_string(), source: Box::new(error) })
}

fn decode_approval<R: Row>(row: &R) -> Result<Approval, sqlx::Error>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let status: String = row.try_get("status")?;
    let plan: Option<String> = row.try_get("plan")?;
    let result: Option<String> = row.try_get("result")?;
    Ok(Approval {
        request: NewApproval {
            id: row.try_get("id")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            requester: row.try_get("requester")?,
            requester_kind: row.try_get("requester_kind")?,
            requester_roles: parse_json("requester_roles", row.try_get("requester_roles")?)?,
            client: row.try_get("client")?,
            tool: row.try_get("tool")?,
            target: row.try_get("target")?,
            environment: row.try_get("environment")?,
            arguments: row.try_get("arguments")?,
            arguments_hash: row.try_get("arguments_hash")?,
            plan: plan.map(|text| parse_json("plan", text)).transpose()?,
            reason: row.try_get("reason")?,
            approvals_required: u32::try_from(row.try_get::<i64, _>("approvals_required")?).unwrap_or(u32::MAX),
            approver_roles: parse_json("approver_roles", row.try_get("approver_roles")?)?,
        },
        status: ApprovalStatus::parse(&status)
            .map_err(|message| sqlx::Error::ColumnDecode { index: "status".to_string(), source: message.into() })?,
        updated_at: row.try_get("updated_at")?,
        decisions: Vec::new(),
        result: result.map(|text| parse_json("result", text)).transpose()?,
        error: row.try_get("error")?,
    })
}

fn decode_decision<R: Row>(row: &R) -> Result<ApprovalDecision, sqlx::Error>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let roles: String = row.try_get("roles")?;
    Ok(ApprovalDecision {
        principal: row.try_get("principal")?,
        roles: serde_json::from_str(&roles).unwrap_or_default(),
        decision: row.try_get("decision")?,
        comment: row.try_get("comment")?,
        decided_at: row.try_get("decided_at")?,
    })
}

/// A human's decision, as the CLI or the HTTP API hands it over.
#[derive(Debug, Clone)]
pub struct DecisionRequest<'a> {
    pub id: &'a str,
    pub principal: &'a str,
    pub roles: &'a [String],
    pub approve: bool,
    pub comment: Option<&'a str>,
    /// RFC 3339 like the stored times.
    pub now: &'a str,
}

impl Store {
    pub async fn create_approval(&self, approval: &NewApproval) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO approvals ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
             $15, $16, $17, $18, NULL, NULL)"
        );
        let roles = json_text(&approval.requester_roles);
        let plan = approval.plan.as_ref().map(json_text);
        let approver_roles = json_text(&approval.approver_roles);
        on_pool!(self, pool => {
            sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(&approval.id)
                .bind(&approval.created_at)
                .bind(&approval.expires_at)
                .bind(&approval.created_at)
                .bind(&approval.requester)
                .bind(&approval.requester_kind)
                .bind(&roles)
                .bind(&approval.client)
                .bind(&approval.tool)
                .bind(&approval.target)
                .bind(&approval.environment)
                .bind(&approval.arguments)
                .bind(&approval.arguments_hash)
                .bind(&plan)
                .bind(&approval.reason)
                .bind(i64::from(approval.approvals_required))
                .bind(&approver_roles)
                .bind(ApprovalStatus::Pending.as_str())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The request with its decisions; `None` when there is no such id.
    pub async fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM approvals WHERE id = $1");
        let decisions_sql = "SELECT principal, roles, decision, comment, decided_at FROM approval_decisions \
                             WHERE approval_id = $1 ORDER BY decided_at, principal";
        on_pool!(self, pool => {
            let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(id).fetch_optional(pool).await? else {
                return Ok(None);
            };
            let mut approval = decode_approval(&row)?;
            let rows = sqlx::query(decisions_sql).bind(id).fetch_all(pool).await?;
            approval.decisions = rows.iter().map(decode_decision).collect::<Result<_, _>>()?;
            Ok(Some(approval))
        })
    }

    /// Requests, newest first, optionally of one status. Decisions are not loaded here.
    pub async fn approvals(&self, status: Option<ApprovalStatus>, limit: i64) -> Result<Vec<Approval>, StoreError> {
        self.approvals_where(status, limit, |_| true).await
    }

    /// Up to `limit` requests for which `keep` holds, newest first, optionally of one status:
    /// read page by page until `limit` are kept or none are left, so a caller who may see few of
    /// the requests still gets its newest `limit`, not what survives of everybody's newest.
    pub async fn approvals_where(
        &self,
        status: Option<ApprovalStatus>,
        limit: i64,
        keep: impl Fn(&Approval) -> bool,
    ) -> Result<Vec<Approval>, StoreError> {
        const PAGE: i64 = 256;
        let wanted = usize::try_from(limit).unwrap_or(0);
        let mut kept = Vec::new();
        // The last row read: the next page starts after it in (created_at DESC, id) order.
        let mut after: Option<(String, String)> = None;
        while kept.len() < wanted {
            let page = self.approvals_page(status, after.as_ref(), PAGE).await?;
            let n_read = page.len();
            after = page.last().map(|last| (last.request.created_at.clone(), last.request.id.clone()));
            kept.extend(page.into_iter().filter(|approval| keep(approval)));
            if n_read < PAGE as usize {
                break;
            }
        }
        kept.truncate(wanted);
        Ok(kept)
    }

    async fn approvals_page(
        &self,
        status: Option<ApprovalStatus>,
        after: Option<&(String, String)>,
        limit: i64,
    ) -> Result<Vec<Approval>, StoreError> {
        let mut conditions = Vec::new();
        if status.is_some() {
            conditions.push("status = $2".to_string());
        }
        if after.is_some() {
            let (at, id) = if status.is_some() { ("$3", "$4") } else { ("$2", "$3") };
            conditions.push(format!("(created_at < {at} OR (created_at = {at} AND id > {id}))"));
        }
        let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        let sql = format!("SELECT {COLUMNS} FROM approvals {filter} ORDER BY created_at DESC, id LIMIT $1");
        on_pool!(self, pool => {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(limit);
            if let Some(status) = status {
                query = query.bind(status.as_str());
            }
            if let Some((at, id)) = after {
                query = query.bind(at).bind(id);
            }
            let rows = query.fetch_all(pool).await?;
            Ok(rows.iter().map(decode_approval).collect::<Result<_, _>>()?)
        })
    }

    /// Marks pending requests whose time ran out as expired; returns how many.
    pub async fn expire_approvals(&self, now: &str) -> Result<u64, StoreError> {
        let sql =
            "UPDATE approvals SET status = 'expired', updated_at = $1 WHERE status = 'pending' AND expires_at <= $1";
        let result = on_pool!(self, pool => sqlx::query(sql).bind(now).execute(pool).await?.rows_affected());
        Ok(result)
    }

    /// Records one human decision and returns the request's new status: `Approved` once enough
    /// distinct approvers agree, `Rejected` on any rejection, else still `Pending`. Checked in
    /// the same transaction that writes it, with the request's row locked.
    pub async fn decide_approval(&self, request: &DecisionRequest<'_>) -> Result<ApprovalStatus, ApprovalError> {
        let id = request.id;
        if !is_valid_approval_id(id) {
            return Err(ApprovalError::MalformedId(id.to_string()));
        }
        let select = format!("SELECT {COLUMNS} FROM approvals WHERE id = $1");
        on_pool!(self, pool => {
            let mut transaction = pool.begin().await?;
            // Take the write lock (SQLite) or the row lock (PostgreSQL) before reading, so two
            // approvers deciding at once serialise.
            sqlx::query("UPDATE approvals SET updated_at = updated_at WHERE id = $1")
                .bind(id)
                .execute(&mut *transaction)
                .await?;
            let Some(row) = sqlx::query(sqlx::AssertSqlSafe(select.as_str())).bind(id).fetch_optional(&mut *transaction).await? else {
                return Err(ApprovalError::NotFound(id.to_string()));
            };
            let approval = decode_approval(&row)?;
            if approval.status != ApprovalStatus::Pending {
                return Err(ApprovalError::NotPending { id: id.to_string(), status: approval.status });
            }
            if approval.request.expires_at.as_str() <= request.now {
                sqlx::query("UPDATE approvals SET status = 'expired', updated_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(request.now)
                    .execute(&mut *transaction)
                    .await?;
                transaction.commit().await?;
                return Err(ApprovalError::Expired { id: id.to_string(), expires_at: approval.request.expires_at });
            }
            if approval.request.requester == request.principal {
                return Err(ApprovalError::SelfApproval { id: id.to_string(), principal: request.principal.to_string() });
            }
            if !request.roles.iter().any(|role| approval.request.approver_roles.contains(role)) {
                return Err(ApprovalError::MissingRole {
                    id: id.to_string(),
                    principal: request.principal.to_string(),
                    required: approval.request.approver_roles.clone(),
                });
            }
            let already = sqlx::query("SELECT decision FROM approval_decisions WHERE approval_id = $1 AND principal = $2")
                .bind(id)
                .bind(request.principal)
                .fetch_optional(&mut *transaction)
                .await?;
            if already.is_some() {
                return Err(ApprovalError::AlreadyDecided { id: id.to_string(), principal: request.principal.to_string() });
            }
            sqlx::query(
                "INSERT INTO approval_decisions (approval_id, principal, roles, decision, comment, decided_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(request.principal)
            .bind(json_text(&request.roles))
            .bind(if request.approve { "approve" } else { "reject" })
            .bind(request.comment)
            .bind(request.now)
            .execute(&mut *transaction)
            .await?;
            let approvals: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM approval_decisions WHERE approval_id = $1 AND decision = 'approve'",
            )
            .bind(id)
            .fetch_one(&mut *transaction)
            .await?
            .try_get("n")?;
            let status = if !request.approve {
                ApprovalStatus::Rejected
            } else if approvals >= i64::from(approval.request.approvals_required) {
                ApprovalStatus::Approved
            } else {
                ApprovalStatus::Pending
            };
            sqlx::query("UPDATE approvals SET status = $2, updated_at = $3 WHERE id = $1")
                .bind(id)
                .bind(status.as_str())
                .bind(request.now)
                .execute(&mut *transaction)
                .await?;
            transaction.commit().await?;
            Ok(status)
        })
    }

    /// Moves an approved request to `executing`; true for exactly one caller, ever. Whoever gets
    /// true runs the call.
    pub async fn claim_approval(&self, id: &str, now: &str) -> Result<bool, StoreError> {
        let sql = "UPDATE approvals SET status = 'executing', updated_at = $2 WHERE id = $1 AND status = 'approved'";
        let claimed = on_pool!(self, pool => sqlx::query(sql).bind(id).bind(now).execute(pool).await?.rows_affected());
        Ok(claimed == 1)
    }

    /// Records how the execution of a claimed request ended.
    pub async fn finish_approval(
        &self,
        id: &str,
        status: ApprovalStatus,
        result: Option<&serde_json::Value>,
        error: Option<&str>,
        now: &str,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE approvals SET status = $2, result = $3, error = $4, updated_at = $5 \
                   WHERE id = $1 AND status = 'executing'";
        let result = result.map(json_text);
        on_pool!(self, pool => {
            sqlx::query(sql).bind(id).bind(status.as_str()).bind(result).bind(error).bind(now).execute(pool).await?;
        });
        Ok(())
    }
}
