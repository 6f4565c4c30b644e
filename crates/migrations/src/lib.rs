//! The one ordered schema history of the shared Postgres (`migrations/` at the workspace root),
//! embedded so every binary and test applies exactly the same SQL.

/// sqlx's migrator takes a Postgres advisory lock while it runs, so replicas (or tests) that
/// migrate the same database at once serialise instead of racing.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");
