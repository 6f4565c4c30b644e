//! CPU time used by this process and by the Postgres backends of a test database: the cost of
//! a piece of work, which moves far less than its wall-clock time on a shared machine.

use crate::TestDb;

/// CPU seconds used so far by this process and by the server processes of a database, when
/// they run on this machine.
#[derive(Debug, Clone, Copy)]
pub struct Cpu {
    pub here: f64,
    pub postgres: Option<f64>,
}

impl Cpu {
    /// Reads the counters now. Postgres is counted over the backends connected to `db` at this
    /// moment, so the work measured should run on connections that stay open throughout.
    pub async fn now(db: &TestDb) -> anyhow::Result<Cpu> {
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()",
        )
        .fetch_all(&db.pool)
        .await?;
        // A server in a container reports pids of its own namespace: count only processes
        // that are Postgres here.
        let postgres = pids
            .iter()
            .map(|pid| {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                (comm.trim() == "postgres")
                    .then(|| cpu_of(&format!("/proc/{pid}/stat")))
                    .flatten()
            })
            .sum::<Option<f64>>();
        Ok(Cpu {
            here: cpu_of("/proc/self/stat").unwrap_or(f64::NAN),
            postgres,
        })
    }

    /// Microseconds of CPU per unit of work since `before`, here and in Postgres, as text:
    /// "1.2 µs in this process + 3.4 µs in Postgres".
    pub fn per(self, before: Cpu, units: usize) -> String {
        let micros = |seconds: f64| seconds / units as f64 * 1e6;
        let here = micros(self.here - before.here);
        match self.postgres.zip(before.postgres) {
            Some((after, earlier)) => format!(
                "{here:.1} µs in this process + {:.1} µs in Postgres",
                micros(after - earlier)
            ),
            None => format!("{here:.1} µs in this process (Postgres not on this machine)"),
        }
    }
}

/// User + system time of a process from its `/proc/<pid>/stat`, in seconds.
fn cpu_of(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ, 100 on every Linux this runs on.
    Some(ticks / 100.0)
}
