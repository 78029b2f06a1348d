//! Subscribers and fan-out. Each subscriber has a bounded channel; a subscriber whose channel is
//! full is disconnected with RESOURCE_EXHAUSTED, never skipped silently — a skipped wake-up would
//! look like an Indexer lying by omission, while a dropped stream tells the agent to reconnect
//! (with `from_block`) and catch up.
//!
//! Subscriptions are capped per (cluster, member) and in total (issue 11 hole 3): `Subscribe` is
//! open to anyone (pushes are public data), so without caps one client could hold every socket,
//! task and buffer the Indexer has. A refusal is RESOURCE_EXHAUSTED naming the cap.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use alloy_primitives::{Address, B256};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tonic::Status;

use crate::pb;

/// One push ready to fan out: the signed message and who may receive it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub cluster: Address,
    pub block_number: u64,
    /// `Some(member)` for `MessageSent` (only its recipient gets it), `None` for events every
    /// member of the cluster is woken for.
    pub recipient: Option<B256>,
    pub push: pb::Push,
}

impl Outgoing {
    /// Whether this push concerns the subscriber.
    pub fn concerns(&self, cluster: Address, member: B256) -> bool {
        self.cluster == cluster && self.recipient.is_none_or(|r| r == member)
    }
}

struct Sub {
    cluster: Address,
    member: B256,
    from_block: u64,
    tx: mpsc::Sender<pb::Push>,
    kill: Option<oneshot::Sender<Status>>,
}

struct Inner {
    /// Highest block whose pushes were fully fanned out (None before the first batch).
    height: Option<u64>,
    subs: HashMap<u64, Sub>,
    /// Live subscriptions per (cluster, member), kept in step with `subs`.
    per_member: HashMap<(Address, B256), usize>,
    next_id: u64,
}

impl Inner {
    /// Removes a subscription and its per-member count; `false` if it was already gone.
    fn remove(&mut self, id: u64) -> bool {
        let Some(s) = self.subs.remove(&id) else {
            return false;
        };
        let key = (s.cluster, s.member);
        if let Some(n) = self.per_member.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_member.remove(&key);
            }
        }
        true
    }
}

/// The subscription caps.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Concurrent subscriptions one (cluster, member) may hold.
    pub per_member: usize,
    /// Concurrent subscriptions in total.
    pub total: usize,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("max_subscriptions_per_member ({cap}) reached for cluster {cluster} member {member}")]
    PerMember {
        cap: usize,
        cluster: Address,
        member: B256,
    },
    #[error("max_subscriptions ({0}) reached")]
    Total(usize),
}

impl From<Refused> for Status {
    fn from(r: Refused) -> Self {
        Status::resource_exhausted(r.to_string())
    }
}

/// Counters exported on `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub pushes_sent: AtomicU64,
    pub slow_disconnects: AtomicU64,
    pub sessions: AtomicU64,
    /// `eth_getLogs` pages read for replays (one per `batch_size` blocks of a `from_block`).
    pub replay_pages: AtomicU64,
    /// Subscriptions refused with RESOURCE_EXHAUSTED because a cap was reached.
    pub refused: AtomicU64,
}

/// The subscriber registry. One lock covers both the subscriber set and `height`, so a new
/// subscriber sees a consistent cut: everything at or below `height` is replayable from the
/// chain, everything above arrives live.
pub struct Hub {
    inner: Mutex<Inner>,
    capacity: usize,
    limits: Limits,
    pub counters: Counters,
}

impl Hub {
    pub fn new(capacity: usize, height: Option<u64>, limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                height,
                subs: HashMap::new(),
                per_member: HashMap::new(),
                next_id: 1,
            }),
            capacity: capacity.max(1),
            limits,
            counters: Counters::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated in a way that matters
        // (every mutation is a single insert/remove), so recover from poisoning.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn height(&self) -> Option<u64> {
        self.lock().height
    }

    pub fn subscriber_count(&self) -> usize {
        self.lock().subs.len()
    }

    /// Registers a subscriber; returns its receiving side and the height at registration (live
    /// pushes delivered to it are all above that height), or the cap it would exceed.
    pub fn subscribe(
        self: &Arc<Self>,
        cluster: Address,
        member: B256,
        from_block: u64,
    ) -> Result<(Registration, Option<u64>), Refused> {
        let mut g = self.lock();
        let held = g.per_member.get(&(cluster, member)).copied().unwrap_or(0);
        let refused = if held >= self.limits.per_member {
            Some(Refused::PerMember {
                cap: self.limits.per_member,
                cluster,
                member,
            })
        } else if g.subs.len() >= self.limits.total {
            Some(Refused::Total(self.limits.total))
        } else {
            None
        };
        if let Some(r) = refused {
            drop(g);
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%cluster, %member, reason = %r, "subscription refused");
            return Err(r);
        }
        let (tx, rx) = mpsc::channel(self.capacity);
        let (kill_tx, kill_rx) = oneshot::channel();
        *g.per_member.entry((cluster, member)).or_insert(0) += 1;
        let id = g.next_id;
        g.next_id += 1;
        g.subs.insert(
            id,
            Sub {
                cluster,
                member,
                from_block,
                tx,
                kill: Some(kill_tx),
            },
        );
        let height = g.height;
        drop(g);
        self.counters.sessions.fetch_add(1, Ordering::Relaxed);
        Ok((
            Registration {
                hub: self.clone(),
                id,
                rx,
                kill: kill_rx,
            },
            height,
        ))
    }

    /// Fans out one indexed batch and advances the height, atomically with respect to
    /// [`Hub::subscribe`].
    pub fn publish(&self, batch: &[Outgoing], height: u64) {
        let mut g = self.lock();
        let mut dead = Vec::new();
        for out in batch {
            for (id, s) in g.subs.iter_mut() {
                if !out.concerns(s.cluster, s.member) || out.block_number < s.from_block {
                    continue;
                }
                match s.tx.try_send(out.push.clone()) {
                    Ok(()) => {
                        self.counters.pushes_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        if let Some(k) = s.kill.take() {
                            let _ = k.send(Status::resource_exhausted(
                                "subscriber too slow: push buffer full; reconnect with from_block",
                            ));
                        }
                        self.counters
                            .slow_disconnects
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(cluster = %s.cluster, member = %s.member, "disconnecting slow subscriber");
                        dead.push(*id);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => dead.push(*id),
                }
            }
            for id in dead.drain(..) {
                g.remove(id);
            }
        }
        g.height = Some(g.height.map_or(height, |h| h.max(height)));
    }

    /// Ends every subscription with UNAVAILABLE. Called on shutdown: a live stream would
    /// otherwise keep its HTTP/2 connection (which still answers keepalives) and its subscriber
    /// waiting on an Indexer that no longer indexes, instead of making it reconnect.
    pub fn close_all(&self) {
        let mut g = self.lock();
        for s in g.subs.values_mut() {
            if let Some(k) = s.kill.take() {
                let _ = k.send(Status::unavailable(
                    "indexer shutting down; reconnect with from_block",
                ));
            }
        }
        g.subs.clear();
        g.per_member.clear();
    }

    fn remove(&self, id: u64) {
        self.lock().remove(id);
    }
}

/// The receiving half of a subscription; unregisters itself when dropped (client went away).
pub struct Registration {
    hub: Arc<Hub>,
    id: u64,
    rx: mpsc::Receiver<pb::Push>,
    kill: oneshot::Receiver<Status>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.remove(self.id);
    }
}

/// Replayed pushes, produced lazily (see [`crate::replay`]); an error ends the subscription.
pub type ReplayStream = Pin<Box<dyn Stream<Item = Result<pb::Push, Status>> + Send>>;

/// The gRPC response stream: replayed pushes first, then live ones; the first item carries the
/// attestation; a kill (slow subscriber) ends the stream with that status.
pub struct PushStream {
    reg: Registration,
    replay: Option<ReplayStream>,
    attestation: Option<pb::Attestation>,
    done: bool,
}

impl PushStream {
    pub fn new(
        reg: Registration,
        replay: Option<ReplayStream>,
        attestation: pb::Attestation,
    ) -> Self {
        Self {
            reg,
            replay,
            attestation: Some(attestation),
            done: false,
        }
    }

    fn first(&mut self, mut p: pb::Push) -> pb::Push {
        if let Some(a) = self.attestation.take() {
            p.attestation = Some(a);
        }
        p
    }
}

impl Stream for PushStream {
    type Item = Result<pb::Push, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(Ok(status)) = Pin::new(&mut this.reg.kill).poll(cx) {
            this.done = true;
            return Poll::Ready(Some(Err(status)));
        }
        // The replay is polled only when the client wants the next item (tonic polls the stream
        // as HTTP/2 flow control allows), so a client that stops reading stops the paging.
        if let Some(replay) = this.replay.as_mut() {
            match replay.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(p))) => {
                    let p = this.first(p);
                    return Poll::Ready(Some(Ok(p)));
                }
                Poll::Ready(Some(Err(status))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(None) => this.replay = None,
                // Live pushes wait behind the replay to keep block order.
                Poll::Pending => return Poll::Pending,
            }
        }
        match this.reg.rx.poll_recv(cx) {
            Poll::Ready(Some(p)) => {
                let p = this.first(p);
                Poll::Ready(Some(Ok(p)))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

use std::future::Future as _;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    const LIMITS: Limits = Limits {
        per_member: 2,
        total: 3,
    };

    #[test]
    fn caps_count_live_subscriptions_only() {
        let hub = Hub::new(2, None, LIMITS);
        let (c, m) = (Address::repeat_byte(1), B256::repeat_byte(0xa));
        let r1 = hub.subscribe(c, m, 0).unwrap();
        let r2 = hub.subscribe(c, m, 0).unwrap();
        assert!(matches!(
            hub.subscribe(c, m, 0),
            Err(Refused::PerMember { cap: 2, .. })
        ));
        let r3 = hub.subscribe(c, B256::repeat_byte(0xb), 0).unwrap();
        assert_eq!(
            hub.subscribe(c, B256::repeat_byte(0xc), 0).err(),
            Some(Refused::Total(3))
        );
        drop(r1);
        assert!(
            hub.subscribe(c, m, 0).is_ok(),
            "a dropped slot is free again"
        );
        drop((r2, r3));
        hub.close_all();
        assert_eq!(hub.subscriber_count(), 0);
        assert_eq!(hub.counters.refused.load(Ordering::Relaxed), 2);
    }

    fn out(cluster: u8, block: u64, recipient: Option<u8>) -> Outgoing {
        Outgoing {
            cluster: Address::repeat_byte(cluster),
            block_number: block,
            recipient: recipient.map(B256::repeat_byte),
            push: pb::Push {
                block_number: block,
                ..Default::default()
            },
        }
    }

    #[tokio::test]
    async fn routing_and_slow_disconnect() {
        let hub = Hub::new(2, None, LIMITS);
        let (a, _) = hub
            .subscribe(Address::repeat_byte(1), B256::repeat_byte(0xa), 0)
            .unwrap();
        let (b, _) = hub
            .subscribe(Address::repeat_byte(1), B256::repeat_byte(0xb), 0)
            .unwrap();
        let mut a = PushStream::new(a, None, pb::Attestation::default());
        let mut b = PushStream::new(b, None, pb::Attestation::default());
        // To B only, to everyone, another cluster.
        hub.publish(&[out(1, 5, Some(0xb)), out(1, 6, None), out(2, 6, None)], 6);
        let first = b.next().await.unwrap().unwrap();
        assert_eq!(first.block_number, 5);
        assert!(first.attestation.is_some());
        let second = b.next().await.unwrap().unwrap();
        assert_eq!(second.block_number, 6);
        assert!(second.attestation.is_none());
        let only = a.next().await.unwrap().unwrap();
        assert_eq!(only.block_number, 6, "A never gets B's MessageSent");
        // A now reads nothing: three more pushes overflow its buffer of 2.
        hub.publish(
            &[
                out(1, 7, Some(0xa)),
                out(1, 8, Some(0xa)),
                out(1, 9, Some(0xa)),
            ],
            9,
        );
        let err = a.next().await.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(a.next().await.is_none());
        assert_eq!(hub.counters.slow_disconnects.load(Ordering::Relaxed), 1);
        assert_eq!(hub.subscriber_count(), 1);
        drop(b);
        assert_eq!(hub.subscriber_count(), 0);
        assert_eq!(hub.height(), Some(9));
    }
}
