//! The change feed of the Postgres store: one connection that `LISTEN`s,
//! reconnecting with backoff whenever it is lost.

use super::CHANNEL;
use super::keys::Keys;
use crate::resources::{ResourceKey, ResourceType};
use crate::runtime::Backoff;
use crate::store::{ChangeEvent, ChangeFeed};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

#[derive(serde::Deserialize)]
struct Notification {
    op: String,
    #[serde(rename = "type")]
    kind: String,
    mesh: String,
    name: String,
}

fn to_event(payload: &str) -> Option<ChangeEvent> {
    let n: Notification = serde_json::from_str(payload).ok()?;
    let key = ResourceKey::new(ResourceType::from_name(&n.kind)?, &n.mesh, &n.name);
    match n.op.as_str() {
        "INSERT" => Some(ChangeEvent::Created(key)),
        "UPDATE" => Some(ChangeEvent::Updated(key)),
        "DELETE" => Some(ChangeEvent::Deleted(key)),
        _ => None,
    }
}

/// Runs until aborted. `listening` is told once the first `LISTEN` is in
/// place. The first connection announces nothing; every later one announces
/// [`ChangeEvent::Resync`], because writes made while it was gone were not
/// heard.
pub(super) async fn run(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    (changes, keys): (ChangeFeed, Arc<Keys>),
    listening: tokio::sync::oneshot::Sender<()>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut connected_before = false;
    let mut listening = Some(listening);
    loop {
        match listen_once(
            &config,
            tls.clone(),
            (&changes, &keys),
            connected_before,
            &mut listening,
        )
        .await
        {
            Ok(()) => {
                tracing::warn!("postgres change feed: connection closed; reconnecting");
                backoff.reset();
            }
            Err(e) => {
                tracing::warn!(error = %e, "postgres change feed: cannot listen; retrying");
            }
        }
        connected_before = true;
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    tls: MakeRustlsConnect,
    (changes, keys): (&ChangeFeed, &Arc<Keys>),
    announce_resync: bool,
    listening: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tls).await?;
    let feed = changes.clone();
    let heard = keys.clone();
    let pump = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => match to_event(n.payload()) {
                    Some(event) => {
                        heard.heard(&event);
                        feed.announce(event);
                    }
                    None => tracing::warn!(
                        payload = n.payload(),
                        "postgres change feed: unreadable notification"
                    ),
                },
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    keys.listening(true);
    if let Some(tx) = listening.take() {
        let _ = tx.send(());
    }
    if announce_resync {
        tracing::info!("postgres change feed: listening again");
        changes.announce(ChangeEvent::Resync);
    }
    let result = pump.await.unwrap_or(Ok(()));
    keys.listening(false);
    drop(client);
    result
}
