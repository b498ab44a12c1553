//! API keys for HTTP callers: created with a name and roles, shown once, stored only as their
//! SHA-256, looked up by that hash on each request (the server caches the answer), and revoked by
//! name. A revoked key keeps its row so that its name is never reused.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{Store, StoreError, on_pool};

/// Every key starts with this, so a bearer token is recognised as an API key (and not a JWT)
/// without a lookup, and secret scanners can find leaked keys.
pub const KEY_PREFIX: &str = "og_";

/// Random bytes in a key: 256 bits, hex-encoded after the prefix.
const KEY_BYTES: usize = 32;

/// The length of a well-formed key: the prefix and 64 hex digits.
pub const KEY_LENGTH: usize = KEY_PREFIX.len() + 2 * KEY_BYTES;

/// Characters of a key kept in clear for display (`og_` and the first 8 hex digits, 32 bits of
/// the 256): enough to tell keys apart in a list, useless for guessing the rest.
const DISPLAY_PREFIX_LENGTH: usize = KEY_PREFIX.len() + 8;

/// A stored key, without the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    /// The first characters of the key, e.g. `og_3fa9c2d1`.
    pub prefix: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// A key just created: the stored row and the key itself, which exists nowhere else.
#[derive(Debug)]
pub struct NewApiKey {
    pub key: ApiKey,
    pub secret: String,
}

/// What `revoke_api_key` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    Revoked { at: String },
    AlreadyRevoked { at: String },
    UnknownName,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("an API key named {0:?} already exists (revoked keys keep their names)")]
    NameTaken(String),
    #[error("invalid API key name {0:?}: use 1 to 64 of a-z, A-Z, 0-9, '-', '_', '.', '@'")]
    InvalidName(String),
    #[error("invalid role {0:?}: use 1 to 64 of a-z, A-Z, 0-9, '-', '_', '.', ':'")]
    InvalidRole(String),
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// SHA-256 of a presented key. The server keys its cache by these bytes.
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The stored form of a digest: lower-case hex.
pub fn digest_hex(digest: &[u8; 32]) -> String {
    crate::audit::to_hex(digest)
}

/// Whether `token` has the shape of a key (`og_` and 64 lower-case hex digits). Checked before
/// any lookup, so garbage never reaches the store.
pub fn is_well_formed(token: &str) -> bool {
    token.len() == KEY_LENGTH
        && token.starts_with(KEY_PREFIX)
        && token[KEY_PREFIX.len()..].bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// The public part of a key, safe to show and to log.
pub fn display_prefix(token: &str) -> &str {
    token.get(..DISPLAY_PREFIX_LENGTH).unwrap_or(KEY_PREFIX)
}

fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'@'))
}

fn is_valid_role(role: &str) -> bool {
    (1..=64).contains(&role.len())
        && role.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':'))
}

const SELECT: &str = "SELECT id, name, roles, prefix, created_at, revoked_at FROM api_keys";

fn decode_key<R: Row>(row: &R) -> Result<ApiKey, StoreError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let name: String = row.try_get("name")?;
    let roles: String = row.try_get("roles")?;
    let roles = serde_json::from_str(&roles)
        .map_err(|error| StoreError::Internal(format!("API key {name:?} has unreadable roles: {error}")))?;
    Ok(ApiKey {
        id: row.try_get("id")?,
        name,
        roles,
        prefix: row.try_get("prefix")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.is_unique_violation())
}

impl Store {
    /// Creates a key for `name` with `roles` and returns it; only its hash is stored.
    pub async fn create_api_key(&self, name: &str, roles: &[String]) -> Result<NewApiKey, ApiKeyError> {
        if !is_valid_name(name) {
            return Err(ApiKeyError::InvalidName(name.to_string()));
        }
        if let Some(role) = roles.iter().find(|role| !is_valid_role(role)) {
            return Err(ApiKeyError::InvalidRole(role.clone()));
        }
        let mut random = [0u8; KEY_BYTES + 16];
        getrandom::fill(&mut random).map_err(|error| ApiKeyError::Random(error.to_string()))?;
        let (secret_bytes, id_bytes) = random.split_at(KEY_BYTES);
        let secret = format!("{KEY_PREFIX}{}", hex::encode(secret_bytes));
        let key = ApiKey {
            id: hex::encode(id_bytes),
            name: name.to_string(),
            roles: roles.to_vec(),
            prefix: display_prefix(&secret).to_string(),
            created_at: crate::now_rfc3339(),
            revoked_at: None,
        };
        let roles_json = serde_json::to_string(&key.roles)
            .map_err(|error| StoreError::Internal(format!("cannot encode roles: {error}")))?;
        let key_hash = digest_hex(&key_digest(&secret));
        let inserted = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO api_keys (id, name, roles, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&key.id)
            .bind(&key.name)
            .bind(&roles_json)
            .bind(&key_hash)
            .bind(&key.prefix)
            .bind(&key.created_at)
            .execute(pool)
            .await
            .map(|_| ())
        });
        match inserted {
            Ok(_) => Ok(NewApiKey { key, secret }),
            Err(error) if is_unique_violation(&error) => Err(ApiKeyError::NameTaken(name.to_string())),
            Err(error) => Err(StoreError::from(error).into()),
        }
    }

    /// Every key, revoked ones included, oldest first.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let sql = format!("{SELECT} ORDER BY created_at, name");
        on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).fetch_all(pool).await?;
            rows.iter().map(decode_key).collect()
        })
    }

    /// The key whose SHA-256 is `key_hash` (hex), revoked or not.
    pub async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let sql = format!("{SELECT} WHERE key_hash = $1");
        on_pool!(self, pool => {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(key_hash).fetch_optional(pool).await?;
            row.as_ref().map(decode_key).transpose()
        })
    }

    /// Whether any key was ever created (revoked ones count): the default anonymous rule closes
    /// anonymous access once one was.
    pub async fn any_api_keys(&self) -> Result<bool, StoreError> {
        let found = on_pool!(self, pool => {
            sqlx::query("SELECT id FROM api_keys LIMIT 1").fetch_optional(pool).await?.is_some()
        });
        Ok(found)
    }

    /// Revokes the key named `name`. Revoking twice is not an error: it says when it happened.
    pub async fn revoke_api_key(&self, name: &str) -> Result<Revocation, StoreError> {
        let now = crate::now_rfc3339();
        let updated = on_pool!(self, pool => {
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
                .bind(&now)
                .bind(name)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if updated > 0 {
            return Ok(Revocation::Revoked { at: now });
        }
        let revoked_at: Option<Option<String>> = on_pool!(self, pool => {
            let row = sqlx::query("SELECT revoked_at FROM api_keys WHERE name = $1").bind(name).fetch_optional(pool).await?;
            row.map(|row| row.try_get("revoked_at")).transpose()?
        });
        match revoked_at {
            None => Ok(Revocation::UnknownName),
            Some(Some(at)) => Ok(Revocation::AlreadyRevoked { at }),
            // Nothing ever clears revoked_at, so an active row the UPDATE did not match means the
            // store is not what this code expects: say so rather than claim a revocation.
            Some(None) => Err(StoreError::Internal(format!("API key {name:?} could not be revoked; try again"))),
        }
    }
}
