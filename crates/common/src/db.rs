//! The shared Postgres: a pool with explicit limits, and the embedded migrations.

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::DatabaseConfig;

/// A lazily connecting pool: the service can bind and report "not ready" while the database
/// is still coming up, instead of crashing in a restart loop.
pub fn connect(service: &str, config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    let statement_timeout = config.database_statement_timeout.as_millis().to_string();
    let options = PgConnectOptions::from_str(config.database_url.expose_secret())
        .map_err(|e| anyhow::anyhow!("DATABASE_URL is not usable: {e}"))?
        .application_name(service)
        .options([("statement_timeout", statement_timeout.as_str())]);
    Ok(PgPoolOptions::new()
        .max_connections(config.database_max_connections)
        .min_connections(0)
        .acquire_timeout(config.database_acquire_timeout)
        .idle_timeout(Some(Duration::from_secs(600)))
        .max_lifetime(Some(Duration::from_secs(1800)))
        .connect_lazy_with(options))
}

/// Applies pending migrations. sqlx holds a Postgres advisory lock for the duration, so
/// replicas booting together apply each migration exactly once.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    autonoma_migrations::MIGRATOR
        .run(pool)
        .await
        .map_err(|e| anyhow::anyhow!("migrations failed: {e}"))
}

/// [`migrate`], retrying while the database is unreachable, for at most `patience`.
pub async fn migrate_when_reachable(pool: &PgPool, patience: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut delay = Duration::from_millis(250);
    loop {
        match ping(pool).await {
            Ok(()) => return migrate(pool).await,
            Err(error) if tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(%error, "database not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(error) => {
                return Err(anyhow::anyhow!(
                    "database not reachable within {}s: {error}",
                    patience.as_secs()
                ));
            }
        }
    }
}

/// One round trip to the database.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// The pool a service uses, migrated first when `MIGRATE_ON_START` is set.
pub async fn open(service: &str, config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    let pool = connect(service, config)?;
    if config.migrate_on_start {
        migrate_when_reachable(&pool, Duration::from_secs(60)).await?;
    }
    Ok(pool)
}
