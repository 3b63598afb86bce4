//! The listener and per-connection loop.
//!
//! Each connection has a reader (frames → request tasks) and a writer that sends
//! responses strictly in request order, as Kafka clients require, while requests
//! themselves run concurrently (a slow produce does not hold up a metadata call
//! queued behind it, only its response order).
//!
//! What a connection may have in flight is bounded by what it costs, not by a
//! count of requests: produce requests waiting for their flush hold their
//! bytes against the connection's share of the request budget (a quarter of
//! `max_inflight_request_bytes`, at least one largest request), so a producer
//! that pipelines many small requests is not throttled to a few per flush
//! interval; other requests, whose responses can be large (fetches), are at
//! most `MAX_PENDING_OTHER` at a time. Both are released only once the
//! response is written, so a client that pipelines without reading stalls
//! only itself, and memory stays bounded whatever it does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tracing::Instrument;

use crate::api;
use crate::broker::Broker;
use crate::frame::{FrameError, read_body, read_size};

/// Non-produce requests a connection may have in flight, their responses
/// not yet written.
const MAX_PENDING_OTHER: usize = 32;
/// A connection's share of `max_inflight_request_bytes` for produce requests
/// in flight (their responses not yet written).
const CONNECTION_SHARE: u64 = 4;
/// How many times its size a non-produce request is charged against the
/// in-flight budget (decoded Kafka structures are that much larger than bytes).
const NON_PRODUCE_WEIGHT: usize = 32;

/// Serves Kafka on `listeners` (one per broker id of this gateway, all served
/// alike) until `shutdown` resolves, then drains: stops accepting, lets
/// in-flight requests finish (their produce acks included), closes
/// connections, flushes the write path and checkpoints.
pub async fn serve(
    listeners: Vec<TcpListener>,
    broker: Arc<Broker>,
    controller: crate::ownership::Controller,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let checkpoints = tokio::spawn(broker.clone().checkpoint_loop(stop_rx.clone()));
    let compactions = tokio::spawn(broker.clone().compaction_loop(stop_rx.clone()));
    let ownership = tokio::spawn(crate::ownership::run(
        broker.clone(),
        controller,
        stop_rx.clone(),
    ));
    let mut connections = tokio::task::JoinSet::new();
    let (accepted_tx, mut accepted_rx) = mpsc::channel(16);
    let acceptors: Vec<_> = listeners
        .into_iter()
        .map(|listener| tokio::spawn(accept_loop(listener, accepted_tx.clone())))
        .collect();
    drop(accepted_tx);
    tokio::pin!(shutdown);
    let mut next_id: u64 = 0;
    loop {
        tokio::select! {
            Some((socket, peer)) = accepted_rx.recv() => {
                next_id += 1;
                let _ = socket.set_nodelay(true);
                let span = tracing::info_span!("conn", id = next_id, %peer);
                let open = broker.metrics.connection_opened();
                let conn = handle_connection(broker.clone(), socket, stop_rx.clone());
                connections.spawn(async move {
                    let _open = open;
                    conn.await
                }.instrument(span));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = &mut shutdown => break,
            _ = broker.cluster.fenced() => break,
        }
    }
    tracing::info!("shutting down: draining connections");
    // Closes the listeners.
    for a in acceptors {
        a.abort();
        let _ = a.await;
    }
    let _ = stop_tx.send(true);
    broker.begin_shutdown();
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .is_err()
    {
        tracing::warn!("connections still busy after 30s; closing them");
        connections.abort_all();
    }
    let _ = checkpoints.await;
    // A pass cut short is safe (every step is idempotent; the next resumes).
    compactions.abort();
    let _ = compactions.await;
    let _ = ownership.await;
    broker.close(Duration::from_secs(30)).await;
    tracing::info!("shutdown complete");
}

/// Accepts connections on `listener` and hands them to `serve`, until `serve`
/// stops taking them.
async fn accept_loop(
    listener: TcpListener,
    accepted: mpsc::Sender<(TcpStream, std::net::SocketAddr)>,
) {
    loop {
        match listener.accept().await {
            Ok(conn) => {
                if accepted.send(conn).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle_connection(
    broker: Arc<Broker>,
    socket: TcpStream,
    mut stop: watch::Receiver<bool>,
) {
    // Kafka reports a group member's host as "/" + its address.
    let host: Arc<str> = socket
        .peer_addr()
        .map(|a| format!("/{}", a.ip()))
        .unwrap_or_default()
        .into();
    let (mut reader, mut writer) = socket.into_split();
    // Responses in request order, each with the connection's permit it
    // releases once written (the count is bounded by those permits).
    let (tx, mut rx) =
        mpsc::unbounded_channel::<(oneshot::Receiver<Option<BytesMut>>, OwnedSemaphorePermit)>();
    let closed = Arc::new(tokio::sync::Notify::new());
    let closed_w = closed.clone();
    let write_task = tokio::spawn(
        async move {
            // Wake the reader whichever way this ends.
            struct Wake(Arc<tokio::sync::Notify>);
            impl Drop for Wake {
                fn drop(&mut self) {
                    self.0.notify_one();
                }
            }
            let _wake = Wake(closed_w);
            while let Some((pending, _held)) = rx.recv().await {
                match pending.await {
                    Ok(Some(resp)) => {
                        if let Err(e) = writer.write_all(&resp).await {
                            tracing::debug!(error = %e, "write failed");
                            return;
                        }
                    }
                    Ok(None) => {}
                    // The request asked for the connection to close.
                    Err(_) => return,
                }
            }
            let _ = writer.shutdown().await;
        }
        .in_current_span(),
    );
    let idle = broker.settings.idle_timeout;
    let max = broker.settings.max_request_bytes;
    let budget = broker.request_budget.clone();
    let mut prev_turn = None;
    let budget_total = broker
        .settings
        .max_inflight_request_bytes
        .min(u32::MAX as u64) as usize;
    let share = (broker.settings.max_inflight_request_bytes / CONNECTION_SHARE)
        .max(broker.settings.max_request_bytes)
        .min(u32::MAX as u64) as usize;
    let produce_bytes = Arc::new(Semaphore::new(share));
    let others = Arc::new(Semaphore::new(MAX_PENDING_OTHER));
    loop {
        let next = async {
            let n = read_size(&mut reader, max).await?;
            let body = read_body(&mut reader, n).await?;
            let received = Instant::now();
            // Admission after the bytes are in (a slow sender holds no budget)
            // and before decoding, which for non-produce requests can take ~32x
            // their size in memory. A flood of large requests waits here.
            let produce = body.len() >= 2 && body[0..2] == [0, 0];
            // This connection's part first: a client that pipelines without
            // reading its responses waits here, holding none of the budget.
            let held = if produce {
                produce_bytes
                    .clone()
                    .acquire_many_owned(n.clamp(1, share) as u32)
                    .await
            } else {
                others.clone().acquire_owned().await
            }
            .map_err(|_| FrameError::Closed)?;
            let weight = if produce { 1 } else { NON_PRODUCE_WEIGHT };
            let permit = budget
                .clone()
                .acquire_many_owned(n.saturating_mul(weight).min(budget_total) as u32)
                .await
                .map_err(|_| FrameError::Closed)?;
            Ok::<_, FrameError>((body, permit, held, received, produce))
        };
        let frame = tokio::select! {
            r = tokio::time::timeout(idle, next) => r,
            _ = stop.changed() => break,
            _ = closed.notified() => break,
        };
        let frame = match frame {
            Err(_) => {
                tracing::debug!("idle timeout; closing");
                break;
            }
            Ok(Err(FrameError::Closed)) => break,
            Ok(Err(e)) => {
                tracing::info!(error = %e, "closing connection");
                break;
            }
            Ok(Ok(f)) => f,
        };
        let (frame, permit, held, received, produce) = frame;
        let (done_tx, done_rx) = oneshot::channel();
        if tx.send((done_rx, held)).is_err() {
            break;
        }
        let (turn, next_prev) = api::Turn::after(prev_turn.take());
        prev_turn = Some(next_prev);
        let broker = broker.clone();
        let host = host.clone();
        tokio::spawn(
            async move {
                let _permit = permit;
                match api::handle_frame(&broker, frame, turn, &host).await {
                    Ok(resp) => {
                        if produce && resp.is_some() {
                            broker.metrics.produce_acked(received.elapsed());
                        }
                        let _ = done_tx.send(resp);
                    }
                    Err(reason) => {
                        tracing::info!(%reason, "closing connection");
                        drop(done_tx);
                    }
                }
            }
            .in_current_span(),
        );
    }
    drop(tx);
    let _ = write_task.await;
}
