//! Shared by the store's test files: one fresh store per test on each backend.

use anyhow::Result;
use opsgate_store::Store;

/// A new SQLite store in a temporary directory and a new PostgreSQL database named `name` on
/// the test cluster; keep the directory alive as long as the store.
pub async fn stores(name: &str) -> Result<Vec<(Store, tempfile::TempDir)>> {
    let dir = tempfile::tempdir()?;
    let sqlite = Store::open_sqlite(dir.path()).await?;
    let postgres_url = opsgate_testkit::Postgres::shared().await?.create_database(name).await?;
    let postgres = Store::open_postgres(&postgres_url).await?;
    Ok(vec![(sqlite, dir), (postgres, tempfile::tempdir()?)])
}
