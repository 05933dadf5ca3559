//! One request's exchange: route it, take stock of its body, then pick servers and try them
//! until one answers or [`crate::policy`] allows no further try.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use crate::balance::{Balancer, Outcome, Tried};
use crate::config::{Config, Server, Upstream};
use crate::http::{self, RequestHead};
use crate::metrics;
use crate::policy::{self, ExchangeError, Kind, Retry, Side, Stage};
use crate::pool::InUse;
use crate::route;

use super::io::UpstreamSide;
use super::request::{self, Body, Buffering};
use super::{Conn, Done, Finished, Target};

impl Conn {
    /// Handle one request whose head is at the start of the client buffer.
    pub(super) async fn exchange(
        &mut self,
        head: &RequestHead,
        config: &Config,
        server: &Server,
    ) -> Done {
        let target = &self.client.buf[head.target.clone()];
        let Some(loc) = route::location_for(server, target) else {
            let unread = request::body_unread(head);
            return self.fail(ExchangeError::rejected(404), head, unread).await;
        };
        // `config` is this worker's current one, so its upstream index is also the index of
        // the balancer built for it.
        let (Some(upstream), Some(balancer)) = (
            config.upstreams.get(loc.upstream),
            self.ctx.balancer(loc.upstream),
        ) else {
            return self.fail(ExchangeError::rejected(500), head, true).await;
        };
        self.client.io.read_timeout = server.client_body_timeout;
        let buffering = Buffering {
            enabled: loc
                .proxy_request_buffering
                .unwrap_or(server.proxy_request_buffering),
            memory: server.client_body_buffer_size,
            temp_dir: &config.client_body_temp_path,
        };
        let body = match self.request_body(head, server, &buffering).await {
            Ok(b) => b,
            Err(e) => return self.fail(e, head, true).await,
        };
        let request = self.upstream_request(head, upstream, &body);
        // Shared with each attempt's write: a write cut by its timeout still holds a reference
        // (the kernel may be reading it), and the next attempt sends the same bytes.
        let request = Rc::new(request);
        let mut done = self
            .try_servers(head, upstream, &balancer, &body, &request)
            .await;
        // Reused unless a timed-out write still holds it (then the pool gives a fresh one).
        self.req = Rc::try_unwrap(request).unwrap_or_default();
        done.consumed = body.consumed;
        done
    }

    /// Everything we must send: the rewritten head plus the body bytes we hold (kept until the
    /// exchange ends, for retries; a body's file part is sent from its file).
    fn upstream_request(
        &mut self,
        head: &RequestHead,
        upstream: &Upstream,
        body: &Body,
    ) -> Vec<u8> {
        let mut request = std::mem::take(&mut self.req);
        request.clear();
        let (buf, h) = (&self.client.buf, &self.client.headers);
        let (ip, name) = (self.peer.ip(), &upstream.name);
        http::write_upstream_head(buf, head, h, ip, name, body.content_length, &mut request);
        if body.held {
            request.extend_from_slice(&self.body.mem);
        } else {
            request.extend_from_slice(&buf[head.head_len..body.consumed]);
        }
        request
    }

    async fn try_servers(
        &mut self,
        head: &RequestHead,
        upstream: &Upstream,
        balancer: &RefCell<Balancer>,
        body: &Body,
        request: &Rc<Vec<u8>>,
    ) -> Done {
        let replayable = policy::replayable(head.method.is_idempotent(), body.to_stream > 0);
        let mut tried = Tried::default();
        let mut last = ExchangeError::upstream(Kind::NoLive);
        let client_ip = self.peer.ip();
        // Handed a slot by the queue: pick at once, ahead of those still waiting.
        let mut called = false;
        // Its number in the queue order, kept should it have to queue again.
        let mut number = None;
        loop {
            let now = Instant::now();
            // First come, first served: while others wait for a slot, a newcomer goes behind
            // them instead of taking the next free one (retries were already served once).
            let (behind, picked) = {
                let mut b = balancer.borrow_mut();
                if !called && tried.is_empty() && b.must_queue() {
                    (true, None)
                } else {
                    (false, b.pick(now, client_ip, &mut tried))
                }
            };
            let Some(peer) = picked else {
                let waitable = {
                    let mut b = balancer.borrow_mut();
                    b.queue().enabled() && tried.is_empty() && (behind || b.at_max_conns(now))
                };
                if waitable {
                    let Some(n) = self.wait_in_queue(balancer, upstream, number).await else {
                        // Logged with its reason; 502 as nginx Plus answers.
                        return self.fail(last, head, body.to_stream > 0).await;
                    };
                    (called, number) = (true, Some(n));
                    continue;
                }
                break;
            };
            let addr = balancer.borrow().address(peer);
            let target = Target {
                head,
                upstream,
                addr,
                body,
                replayable,
            };
            match self.attempt(&target, request).await {
                Ok((done, outcome)) => {
                    {
                        let mut b = balancer.borrow_mut();
                        let wake = b.release(peer, Instant::now(), outcome);
                        self.ctx.shared.wakeups.wake(wake);
                        b.record_status(peer, done.status);
                    }
                    if outcome == Outcome::Failure {
                        // Failed after the head went out: counted, never retried.
                        metrics::add(&self.ctx.stats.upstream_failures, 1);
                    }
                    return done;
                }
                Err(err) => {
                    {
                        let mut b = balancer.borrow_mut();
                        let wake = b.release(peer, Instant::now(), err.outcome());
                        self.ctx.shared.wakeups.wake(wake);
                    }
                    metrics::add(&self.ctx.stats.upstream_failures, 1);
                    tracing::warn!(upstream = %upstream.name, server = %addr, error = ?err, "upstream attempt failed");
                    last = err;
                    if err.retry != Retry::NextServer {
                        break;
                    }
                    metrics::add(&self.ctx.stats.upstream_retries, 1);
                }
            }
        }
        if last.kind == Kind::NoLive {
            tracing::error!(upstream = %upstream.name, "no live upstreams");
        }
        self.fail(last, head, body.to_stream > 0).await
    }

    /// Wait in the upstream's queue until a server slot is handed to this request; returns its
    /// number in the queue order. None: the queue is full or `queue_timeout` passed (nginx
    /// Plus answers 502 to both).
    async fn wait_in_queue(
        &self,
        balancer: &RefCell<Balancer>,
        upstream: &Upstream,
        number: Option<u64>,
    ) -> Option<u64> {
        let stats = &self.ctx.stats;
        let Some(ticket) = balancer.borrow_mut().join_queue(number) else {
            metrics::add(&stats.upstream_queue_rejected, 1);
            tracing::error!(upstream = %upstream.name, "upstream queue is full");
            return None;
        };
        metrics::add(&stats.upstream_queued, 1);
        let place = Place {
            balancer,
            ticket,
            picked: false,
            wakeups: &self.ctx.shared.wakeups,
        };
        // Queued where the other workers see it; a slot freed since the pick looked (by a
        // worker that did not see this request yet) is handed on at once.
        let wake = balancer.borrow_mut().call_waiters(Instant::now());
        self.ctx.shared.wakeups.wake(wake);
        let called = std::future::poll_fn(|cx| {
            if place.ticket.called() {
                return std::task::Poll::Ready(());
            }
            place.ticket.park(cx.waker());
            std::task::Poll::Pending
        });
        match monoio::time::timeout(upstream.queue_timeout, called).await {
            Ok(()) => Some(place.pick()),
            Err(_) => {
                metrics::add(&stats.upstream_queue_rejected, 1);
                tracing::error!(upstream = %upstream.name, "upstream queue timeout");
                None
            }
        }
    }

    /// One try against one server. `Ok`: the client got an answer (or went away) and the
    /// balancer outcome; `Err`: nothing reached the client, and the error says whether the
    /// next server may be tried.
    async fn attempt(
        &mut self,
        t: &Target<'_>,
        request: &Rc<Vec<u8>>,
    ) -> Result<(Done, Outcome), ExchangeError> {
        let u = t.upstream;
        // The worker's coarse clock (its last tick) is precise enough for idle times of
        // seconds, and costs no clock read per request.
        let now = self.client.io.timer.now();
        let pooled = self.ctx.pool.borrow_mut().take(&u.name, t.addr, now);
        // Counted as in use until the attempt ends, however it ends: the pool sizes itself
        // ("auto") from the peak of this count.
        let ctx = self.ctx.clone();
        let (ka, idle) = (u.keepalive, u.keepalive_timeout);
        let _in_use = InUse::new(&ctx.pool, &ctx.deadlines, &u.name, t.addr, ka, idle);
        let state = policy::Attempt {
            reused: pooled.is_some(),
            replayable: t.replayable,
        };
        let stream = match pooled {
            Some(s) => s,
            None => self
                .connect(t)
                .await
                .map_err(|e| e.at(Stage::Connect, state))?,
        };
        let mut up = self.upstream_side(stream, t.upstream);
        let result = self.drive(&mut up, t, request, state).await;
        self.ubuf = std::mem::take(&mut up.buf);
        self.uheaders = std::mem::take(&mut up.headers);
        let finished = result?;
        if finished.reusable {
            self.ctx
                .pool
                .borrow_mut()
                .put(&u.name, t.addr, up.io.tcp, self.client.io.timer.now());
        }
        Ok((finished.done, finished.outcome))
    }

    /// Send the request and relay the response on `up`; a stale pooled connection is replaced
    /// by a fresh one once.
    async fn drive(
        &mut self,
        up: &mut UpstreamSide,
        t: &Target<'_>,
        request: &Rc<Vec<u8>>,
        mut state: policy::Attempt,
    ) -> Result<Finished, ExchangeError> {
        loop {
            let sent = self.send_request(up, t, request).await;
            let head = match sent.map_err(|e| e.at(Stage::Send, state)) {
                Ok(()) => self
                    .read_response_head(up, t.head.method)
                    .await
                    .map_err(|e| e.at(Stage::Head, state)),
                Err(e) => Err(e),
            };
            match head {
                Ok(resp) => return Ok(self.relay(up, t, resp).await),
                Err(e) if e.side == Side::Client => {
                    return Ok(Finished {
                        done: Done::closed(499, 0),
                        outcome: e.outcome(),
                        reusable: false,
                    })
                }
                Err(e) if e.retry == Retry::FreshConnection => {
                    state.reused = false;
                    up.io.tcp = self
                        .connect(t)
                        .await
                        .map_err(|e| e.at(Stage::Connect, state))?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A request's place in an upstream queue. However the wait ends (called, timed out, or the
/// exchange dropped because the client went away), the queue hears of it: a slot handed to
/// a request that no longer wants it goes to the next one in line.
struct Place<'a> {
    balancer: &'a RefCell<Balancer>,
    ticket: crate::balance::queue::Ticket,
    picked: bool,
    wakeups: &'a crate::rt::wakeup::Wakeups,
}

impl Place<'_> {
    /// Called: the request picks now, without another await in between. Its number.
    fn pick(mut self) -> u64 {
        self.balancer.borrow_mut().leave_queue(&self.ticket);
        self.picked = true;
        self.ticket.number()
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if !self.picked {
            // A turn it was given goes to the oldest waiter, here or in another worker.
            let wake = self
                .balancer
                .borrow_mut()
                .abandon_queue(&self.ticket, Instant::now());
            self.wakeups.wake(wake);
        }
    }
}
