//! Waking the readers that wait for rows to appear: one `LISTEN` connection per channel and
//! process, and a watch channel per key (a queue, a page) that waiting readers subscribe to.
//! A lost connection wakes every reader, so none sleeps through what it missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

/// Pause after the listener's connection fails before it reconnects.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

type Senders = Mutex<HashMap<String, watch::Sender<()>>>;

#[derive(Clone)]
pub struct Wakeups {
    inner: Arc<Inner>,
}

struct Inner {
    senders: Arc<Senders>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl Wakeups {
    /// Listens on `channel` at once (nothing notified after this returns is missed); each
    /// notification wakes the readers of the key `key_of(payload)`.
    pub async fn listen(
        pool: &PgPool,
        channel: &str,
        key_of: fn(&str) -> &str,
    ) -> Result<Self, sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(channel).await?;
        let senders: Arc<Senders> = Arc::default();
        let listener = tokio::spawn(run(listener, senders.clone(), key_of, channel.to_owned()));
        Ok(Wakeups {
            inner: Arc::new(Inner { senders, listener }),
        })
    }

    /// A receiver that changes whenever `key` is notified. Subscribe before looking, so a
    /// notification between the look and the wait is not lost.
    pub fn subscribe(&self, key: &str) -> watch::Receiver<()> {
        let mut senders = self
            .inner
            .senders
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        senders
            .entry(key.to_owned())
            .or_insert_with(|| watch::channel(()).0)
            .subscribe()
    }
}

async fn run(
    mut listener: PgListener,
    senders: Arc<Senders>,
    key_of: fn(&str) -> &str,
    channel: String,
) {
    let wake = |key: Option<&str>| {
        let senders = senders.lock().unwrap_or_else(PoisonError::into_inner);
        match key {
            Some(key) => {
                if let Some(sender) = senders.get(key) {
                    sender.send_replace(());
                }
            }
            None => senders.values().for_each(|sender| {
                sender.send_replace(());
            }),
        }
    };
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => wake(Some(key_of(notification.payload()))),
            Ok(None) => {
                tracing::warn!(%channel, "listener lost its connection; reconnecting");
                wake(None);
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(error) => {
                tracing::warn!(%channel, %error, "listener failed; retrying");
                wake(None);
                tokio::time::sleep(LISTEN_RETRY).await;
            }
        }
    }
}
