//! Access logs for `tcp` backends. Envoy has no logger that writes plain
//! lines to a TCP address, so the generator has Envoy write each entry to
//! its stdout as one line behind [`MARKER`] and the address; kuma-dp reads
//! Envoy's stdout, sends each marked line (without the marker and address)
//! to its address over a connection it keeps open, and passes every other
//! line through to its own stdout. Envoy still formats every field.

use crate::runtime::Backoff;
use crate::xds::generator::access_log::TCP_LOG_MARKER as MARKER;
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// Lines held for an address whose collector is unreachable; more are
/// dropped (and counted in a warning) rather than held without bound.
const QUEUE: usize = 10_000;

/// Reads `stdout` (Envoy's) to its end.
pub async fn forward(stdout: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(stdout).lines();
    let mut senders: HashMap<String, mpsc::Sender<String>> = HashMap::new();
    let mut dropped = 0u64;
    while let Ok(Some(line)) = lines.next_line().await {
        let Some((address, entry)) = line.strip_prefix(MARKER).and_then(|l| l.split_once(' '))
        else {
            // Passed through; a closed stdout is no reason to stop
            // forwarding the marked lines.
            let _ = writeln!(std::io::stdout(), "{line}");
            continue;
        };
        let sender = senders
            .entry(address.to_string())
            .or_insert_with(|| connection(address.to_string()));
        if sender.try_send(format!("{entry}\n")).is_err() {
            dropped += 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    address,
                    dropped,
                    "access log lines dropped: the tcp backend is not keeping up or not reachable"
                );
            }
        }
    }
}

/// A task that keeps one connection to `address` and writes the lines it
/// is given, reconnecting with backoff; a line that could not be written is
/// tried again on the next connection.
fn connection(address: String) -> mpsc::Sender<String> {
    let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
    tokio::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut pending: Option<String> = None;
        loop {
            let mut stream = match tokio::net::TcpStream::connect(&address).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%address, "cannot reach the tcp access log backend: {e}");
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
            };
            backoff.reset();
            loop {
                let line = match pending.take() {
                    Some(line) => line,
                    None => match rx.recv().await {
                        Some(line) => line,
                        None => return,
                    },
                };
                if let Err(e) = stream.write_all(line.as_bytes()).await {
                    tracing::warn!(%address, "the tcp access log backend went away: {e}");
                    pending = Some(line);
                    break;
                }
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Marked lines reach their address in order, the rest do not.
    #[tokio::test]
    async fn marked_lines_go_to_their_address_and_others_stay() {
        let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = backend.local_addr().unwrap();
        let envoy_stdout = format!(
            "{MARKER}{address} first entry\nan ordinary line\n{MARKER}{address} second entry\n"
        );
        tokio::spawn(async move { forward(envoy_stdout.as_bytes()).await });
        let (conn, _) = backend.accept().await.unwrap();
        let mut lines = BufReader::new(conn).lines();
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "first entry");
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "second entry");
    }
}
