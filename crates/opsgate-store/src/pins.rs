//! Pins of federated servers' tools: a tool's definition hash as first seen (trust on first use)
//! or as a person last trusted it. The gateway compares every listing with these; a changed
//! definition stays quarantined until someone trusts it.

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError, on_pool};

/// A tool's pinned definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolPin {
    pub server: String,
    /// The server's own name for the tool (not the `mcp__` name).
    pub tool: String,
    /// SHA-256 (hex) of `definition`.
    pub hash: String,
    /// The canonical JSON the hash was taken over.
    pub definition: String,
    /// RFC 3339, UTC.
    pub pinned_at: String,
    /// Who trusted this definition; `None` when it was pinned on first sight.
    pub trusted_by: Option<String>,
}

const SELECT: &str = "SELECT server, tool, hash, definition, pinned_at, trusted_by FROM mcp_tool_pins";

fn decode_pin<R: Row>(row: &R) -> Result<ToolPin, StoreError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ToolPin {
        server: row.try_get("server")?,
        tool: row.try_get("tool")?,
        hash: row.try_get("hash")?,
        definition: row.try_get("definition")?,
        pinned_at: row.try_get("pinned_at")?,
        trusted_by: row.try_get("trusted_by")?,
    })
}

impl Store {
    /// Every pin of `server`, by tool name.
    pub async fn tool_pins(&self, server: &str) -> Result<Vec<ToolPin>, StoreError> {
        let sql = format!("{SELECT} WHERE server = $1 ORDER BY tool");
        let pins = on_pool!(self, pool => {
            sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(server).fetch_all(pool).await?.iter().map(decode_pin).collect::<Result<Vec<_>, _>>()
        })?;
        Ok(pins)
    }

    /// Pins tools seen for the first time, in one transaction; a tool that already has a pin
    /// keeps it (a second opsgate racing to pin the same tool changes nothing either).
    pub async fn pin_new_tools(&self, pins: &[ToolPin]) -> Result<(), StoreError> {
        self.insert_pins(pins, "DO NOTHING").await
    }

    /// Replaces a tool's pin with the definition someone trusted.
    pub async fn trust_tool(&self, pin: &ToolPin) -> Result<(), StoreError> {
        self.insert_pins(
            std::slice::from_ref(pin),
            "DO UPDATE SET hash = excluded.hash, definition = excluded.definition, \
             pinned_at = excluded.pinned_at, trusted_by = excluded.trusted_by",
        )
        .await
    }

    /// Inserts `pins` in one transaction; on an existing pin of the same tool, does `on_conflict`
    /// (a fixed clause).
    async fn insert_pins(&self, pins: &[ToolPin], on_conflict: &'static str) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO mcp_tool_pins (server, tool, hash, definition, pinned_at, trusted_by) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (server, tool) {on_conflict}"
        );
        on_pool!(self, pool => {
            let mut transaction = pool.begin().await?;
            for pin in pins {
                sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(&pin.server)
                    .bind(&pin.tool)
                    .bind(&pin.hash)
                    .bind(&pin.definition)
                    .bind(&pin.pinned_at)
                    .bind(&pin.trusted_by)
                    .execute(&mut *transaction)
                    .await?;
            }
            transaction.commit().await
        })?;
        Ok(())
    }
}
