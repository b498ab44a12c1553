//! API key tests, each run on SQLite and on PostgreSQL: a key is shown once and stored only as its
//! hash, lookups by hash find it, revocation is by name and idempotent, names are unique.

use anyhow::Result;
use opsgate_store::api_keys::{digest_hex, is_well_formed, key_digest};
use opsgate_store::{ApiKeyError, Revocation, Store};

/// One fresh store per test on each backend.
async fn stores(name: &str) -> Result<Vec<(Store, tempfile::TempDir)>> {
    let dir = tempfile::tempdir()?;
    let sqlite = Store::open_sqlite(dir.path()).await?;
    let postgres_url = opsgate_testkit::Postgres::shared().await?.create_database(name).await?;
    let postgres = Store::open_postgres(&postgres_url).await?;
    Ok(vec![(sqlite, dir), (postgres, tempfile::tempdir()?)])
}

fn roles(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

/// Every text column of every row, to check that the key itself is nowhere in the table.
async fn all_stored_text(store: &Store) -> Result<String> {
    let sql =
        "SELECT id, name, roles, key_hash, prefix, created_at, COALESCE(revoked_at, '') AS revoked_at FROM api_keys";
    let mut text = String::new();
    let columns = ["id", "name", "roles", "key_hash", "prefix", "created_at", "revoked_at"];
    match store {
        Store::Sqlite { pool, .. } => {
            for row in sqlx::query(sql).fetch_all(pool).await? {
                for column in columns {
                    text.push_str(&sqlx::Row::try_get::<String, _>(&row, column)?);
                    text.push('\n');
                }
            }
        }
        Store::Postgres(pool) => {
            for row in sqlx::query(sql).fetch_all(pool).await? {
                for column in columns {
                    text.push_str(&sqlx::Row::try_get::<String, _>(&row, column)?);
                    text.push('\n');
                }
            }
        }
    }
    Ok(text)
}

#[tokio::test]
async fn a_created_key_is_shown_once_stored_as_its_hash_and_found_by_it() -> Result<()> {
    for (store, _dir) in stores("api_keys_create").await? {
        let backend = store.backend();
        assert!(!store.any_api_keys().await?, "{backend}: a new store has no keys");
        let created = store.create_api_key("ci-bot", &roles(&["operator", "reader"])).await?;
        assert!(is_well_formed(&created.secret), "{backend}: {}", created.key.prefix);
        assert!(created.secret.starts_with(&created.key.prefix));
        assert_eq!(created.key.prefix.len(), "og_".len() + 8);
        assert_eq!(created.key.roles, roles(&["operator", "reader"]));
        assert!(store.any_api_keys().await?);

        let stored = all_stored_text(&store).await?;
        let secret_part = &created.secret["og_".len()..];
        assert!(!stored.contains(secret_part), "{backend}: the key itself must not be stored");
        assert!(!stored.contains(&secret_part[8..24]), "{backend}: no part beyond the display prefix is stored");
        let hash = digest_hex(&key_digest(&created.secret));
        assert!(stored.contains(&hash), "{backend}: the SHA-256 is stored");

        let found = store.api_key_by_hash(&hash).await?;
        assert_eq!(found.as_ref(), Some(&created.key), "{backend}");
        let other = digest_hex(&key_digest("og_0000000000000000000000000000000000000000000000000000000000000000"));
        assert_eq!(store.api_key_by_hash(&other).await?, None, "{backend}");

        // Keys list by creation time, which has millisecond resolution.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let second = store.create_api_key("alice@laptop", &[]).await?;
        assert_ne!(second.secret, created.secret);
        let listed = store.list_api_keys().await?;
        let names: Vec<&str> = listed.iter().map(|key| key.name.as_str()).collect();
        assert_eq!(names, vec!["ci-bot", "alice@laptop"], "{backend}");
        assert!(listed.iter().all(|key| key.revoked_at.is_none()));
    }
    Ok(())
}

#[tokio::test]
async fn revocation_is_by_name_idempotent_and_keeps_the_row() -> Result<()> {
    for (store, _dir) in stores("api_keys_revoke").await? {
        let backend = store.backend();
        let created = store.create_api_key("deploy", &roles(&["operator"])).await?;
        let revoked_at = match store.revoke_api_key("deploy").await? {
            Revocation::Revoked { at } => at,
            other => panic!("{backend}: expected a revocation, got {other:?}"),
        };
        assert_eq!(
            store.revoke_api_key("deploy").await?,
            Revocation::AlreadyRevoked { at: revoked_at.clone() },
            "{backend}: revoking twice says when it happened"
        );
        assert_eq!(store.revoke_api_key("nobody").await?, Revocation::UnknownName, "{backend}");

        let found = store.api_key_by_hash(&digest_hex(&key_digest(&created.secret))).await?;
        assert_eq!(found.and_then(|key| key.revoked_at), Some(revoked_at), "{backend}: lookups see the revocation");
        assert!(store.any_api_keys().await?, "{backend}: a revoked key still counts as a key");
        match store.create_api_key("deploy", &[]).await {
            Err(ApiKeyError::NameTaken(name)) => assert_eq!(name, "deploy"),
            other => panic!("{backend}: a revoked key's name is not reusable, got {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn names_and_roles_are_validated() -> Result<()> {
    for (store, _dir) in stores("api_keys_validate").await? {
        let backend = store.backend();
        store.create_api_key("ci", &[]).await?;
        for (name, key_roles) in [
            ("", roles(&[])),
            ("has space", roles(&[])),
            ("quote\"", roles(&[])),
            (&"x".repeat(65), roles(&[])),
            ("ok", roles(&["bad role"])),
            ("ok", roles(&[""])),
        ] {
            let result = store.create_api_key(name, &key_roles).await;
            assert!(
                matches!(result, Err(ApiKeyError::InvalidName(_)) | Err(ApiKeyError::InvalidRole(_))),
                "{backend}: {name:?} {key_roles:?} gave {result:?}"
            );
        }
        let duplicate = store.create_api_key("ci", &[]).await;
        let message = duplicate.err().map(|error| error.to_string()).unwrap_or_default();
        assert_eq!(message, "an API key named \"ci\" already exists (revoked keys keep their names)", "{backend}");
        assert_eq!(store.list_api_keys().await?.len(), 1, "{backend}: nothing invalid was stored");
    }
    Ok(())
}

#[test]
fn only_the_exact_key_shape_is_well_formed() {
    let good = format!("og_{}", "0123456789abcdef".repeat(4));
    assert!(is_well_formed(&good));
    assert!(!is_well_formed(&good[..good.len() - 1]));
    assert!(!is_well_formed(&format!("{good}0")));
    assert!(!is_well_formed(&good.replace("og_", "xx_")));
    assert!(!is_well_formed(&good.to_uppercase().replace("OG_", "og_")), "upper-case hex is not a key");
    assert!(!is_well_formed(&format!("og_{}", "é".repeat(32))));
}
