//! What a failed exchange means, decided in one place: [`ExchangeError`] says which side failed,
//! how, and whether another try is safe; from it follow the status the client gets, what the
//! balancer is told, and whether the client connection may go on. Pure: no I/O, no clock.
//!
//! Retry rules (nginx's `proxy_next_upstream error timeout`):
//! - a connect error or timeout moves to the next server for any request: nothing was sent;
//! - after the request was sent, only requests that are idempotent and whose body we still
//!   hold ([`replayable`]) go to the next server, and only while nothing reached the client;
//! - a pooled connection that fails while sending or before any response byte is the stale
//!   keep-alive race: a replayable request is tried once more on a fresh connection to the
//!   same server (a backend that had closed the connection cannot have processed it);
//! - an invalid response head or a failure once the response head went out is never retried.

use crate::balance::Outcome;
use crate::http::BodyKind;

/// Which peer of the exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}

/// How it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No server could be picked (all down, failed, busy or already tried).
    NoLive,
    /// The TCP connect failed (refused, unreachable).
    Connect,
    /// The peer closed or reset the connection.
    Closed,
    /// A wait on the peer passed its timeout.
    Timeout,
    /// The peer broke HTTP (an upstream's response head or body framing).
    Invalid,
    /// The client's request is refused with this status (400, 413, 431, ...).
    Rejected(u16),
}

/// How far an upstream attempt got when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Connecting: nothing was sent.
    Connect,
    /// Sending the request (head and body).
    Send,
    /// Waiting for the response head: nothing reached the client yet.
    Head,
    /// Relaying the response body: the client already has the head.
    Body,
}

/// Whether (and where) the request may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    No,
    NextServer,
    /// Once more on a fresh connection to the same server (stale pooled connection).
    FreshConnection,
}

/// What the attempt knew about itself when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The upstream connection came from the keep-alive pool.
    pub reused: bool,
    /// See [`replayable`].
    pub replayable: bool,
}

/// One failed exchange: the single error type of the connection code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeError {
    pub side: Side,
    pub kind: Kind,
    pub retry: Retry,
}

impl ExchangeError {
    pub fn client(kind: Kind) -> ExchangeError {
        ExchangeError {
            side: Side::Client,
            kind,
            retry: Retry::No,
        }
    }

    /// The client's request is refused with `status`.
    pub fn rejected(status: u16) -> ExchangeError {
        ExchangeError::client(Kind::Rejected(status))
    }

    /// An upstream failure, not yet judged for retry (see [`ExchangeError::at`]).
    pub fn upstream(kind: Kind) -> ExchangeError {
        ExchangeError {
            side: Side::Upstream,
            kind,
            retry: Retry::No,
        }
    }

    /// Judge an upstream failure at `stage` of `attempt` for retry; client failures are never
    /// retried.
    pub fn at(mut self, stage: Stage, attempt: Attempt) -> ExchangeError {
        if self.side == Side::Client {
            return self;
        }
        let stale = attempt.reused && attempt.replayable;
        let next = if attempt.replayable {
            Retry::NextServer
        } else {
            Retry::No
        };
        self.retry = match (stage, self.kind) {
            (Stage::Connect, _) => Retry::NextServer,
            (Stage::Send, _) if stale => Retry::FreshConnection,
            (Stage::Head, Kind::Closed) if stale => Retry::FreshConnection,
            (Stage::Send | Stage::Head, Kind::Invalid) | (Stage::Body, _) => Retry::No,
            (Stage::Send | Stage::Head, _) => next,
        };
        self
    }

    /// The status the client gets (or, for a client that is gone, the one logged: nginx's 499).
    pub fn status(&self) -> u16 {
        match (self.side, self.kind) {
            (Side::Client, Kind::Rejected(status)) => status,
            (Side::Client, _) => 499,
            (Side::Upstream, Kind::Timeout) => 504,
            (Side::Upstream, _) => 502,
        }
    }

    /// Whether the client can still be sent an error page.
    pub fn answers_client(&self) -> bool {
        match self.side {
            Side::Client => matches!(self.kind, Kind::Rejected(_)),
            Side::Upstream => true,
        }
    }

    /// What the balancer is told about the server: a client that went away is not its fault.
    pub fn outcome(&self) -> Outcome {
        match self.side {
            Side::Client => Outcome::Success,
            Side::Upstream => Outcome::Failure,
        }
    }
}

/// Whether a request can be sent again to another server: idempotent, and its body is wholly
/// held by us (a body still streaming from the client cannot be replayed).
pub fn replayable(idempotent: bool, body_still_streaming: bool) -> bool {
    idempotent && !body_still_streaming
}

/// Whether the client connection goes on after this exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    KeepAlive,
    Close,
}

impl Next {
    pub fn from_keep(keep: bool) -> Next {
        if keep {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }
}

/// Whether the client connection stays open after a relayed response: the client asked for
/// it, we are not draining, and the body's end does not depend on closing (close-delimited
/// upstream body, or a chunked one de-chunked for an HTTP/1.0 client).
pub fn client_keep_alive(
    requested: bool,
    draining: bool,
    response: BodyKind,
    dechunk: bool,
) -> bool {
    requested && !draining && response != BodyKind::CloseDelimited && !dechunk
}

/// After an error page: the connection goes on only if the request body left nothing unread
/// (unread body bytes would be taken for the next request).
pub fn after_error_page(
    requested: bool,
    draining: bool,
    body_unread: bool,
    err: &ExchangeError,
) -> Next {
    let fatal = matches!(err.kind, Kind::Rejected(_)) && err.status() != 404;
    Next::from_keep(requested && !draining && !body_unread && !fatal)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRESH_GET: Attempt = Attempt {
        reused: false,
        replayable: true,
    };
    const POOLED_GET: Attempt = Attempt {
        reused: true,
        replayable: true,
    };
    const POST: Attempt = Attempt {
        reused: true,
        replayable: false,
    };

    fn retry(kind: Kind, stage: Stage, attempt: Attempt) -> Retry {
        ExchangeError::upstream(kind).at(stage, attempt).retry
    }

    #[test]
    fn a_failed_connect_goes_to_the_next_server_for_any_request() {
        assert_eq!(
            retry(Kind::Connect, Stage::Connect, POST),
            Retry::NextServer
        );
        assert_eq!(
            retry(Kind::Timeout, Stage::Connect, POST),
            Retry::NextServer
        );
    }

    #[test]
    fn a_stale_pooled_connection_is_retried_fresh_only_for_replayable_requests() {
        assert_eq!(
            retry(Kind::Closed, Stage::Send, POOLED_GET),
            Retry::FreshConnection
        );
        assert_eq!(
            retry(Kind::Closed, Stage::Head, POOLED_GET),
            Retry::FreshConnection
        );
        assert_eq!(
            retry(Kind::Closed, Stage::Head, FRESH_GET),
            Retry::NextServer
        );
        assert_eq!(retry(Kind::Closed, Stage::Head, POST), Retry::No);
        assert_eq!(
            retry(Kind::Timeout, Stage::Head, POOLED_GET),
            Retry::NextServer
        );
    }

    #[test]
    fn invalid_heads_and_failures_after_the_head_are_never_retried() {
        assert_eq!(retry(Kind::Invalid, Stage::Head, FRESH_GET), Retry::No);
        assert_eq!(retry(Kind::Closed, Stage::Body, FRESH_GET), Retry::No);
        let client = ExchangeError::client(Kind::Closed).at(Stage::Send, POOLED_GET);
        assert_eq!(client.retry, Retry::No);
    }

    #[test]
    fn statuses_and_balancer_outcomes() {
        assert_eq!(ExchangeError::upstream(Kind::Timeout).status(), 504);
        assert_eq!(ExchangeError::upstream(Kind::NoLive).status(), 502);
        assert_eq!(ExchangeError::rejected(413).status(), 413);
        assert_eq!(ExchangeError::client(Kind::Closed).status(), 499);
        assert!(!ExchangeError::client(Kind::Timeout).answers_client());
        assert_eq!(
            ExchangeError::client(Kind::Closed).outcome(),
            Outcome::Success
        );
        assert_eq!(
            ExchangeError::upstream(Kind::Closed).outcome(),
            Outcome::Failure
        );
    }

    #[test]
    fn keep_alive_decisions() {
        assert!(client_keep_alive(true, false, BodyKind::Length(3), false));
        assert!(!client_keep_alive(true, true, BodyKind::Length(3), false));
        assert!(!client_keep_alive(
            true,
            false,
            BodyKind::CloseDelimited,
            false
        ));
        assert!(!client_keep_alive(true, false, BodyKind::Chunked, true));
        let e502 = ExchangeError::upstream(Kind::Closed);
        assert_eq!(after_error_page(true, false, false, &e502), Next::KeepAlive);
        assert_eq!(after_error_page(true, false, true, &e502), Next::Close);
        assert_eq!(
            after_error_page(true, false, false, &ExchangeError::rejected(404)),
            Next::KeepAlive
        );
        assert_eq!(
            after_error_page(true, false, false, &ExchangeError::rejected(413)),
            Next::Close
        );
        assert!(replayable(true, false) && !replayable(true, true) && !replayable(false, false));
    }
}
