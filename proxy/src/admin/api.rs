//! The control API on the admin listener (HAProxy's `set server state|weight`, nginx Plus's
//! upstream API):
//!
//! - `GET /api/upstreams`: every upstream and server ([`crate::control::status`]), open.
//! - `GET /api/upstreams/NAME`: one upstream, open.
//! - `POST /api/upstreams/NAME/servers/ADDR` with `{"state": "ready"|"drain"|"maint",
//!   "weight": N}` (either key optional): needs `Authorization: Bearer TOKEN`, the token of
//!   `admin_token_file` (read at each request, so a new token needs no reload). Answers the
//!   server's new status.

use std::time::Instant;

use serde::Deserialize;

use crate::control::status::{self, UpstreamsStatus};
use crate::control::token::Token;
use crate::control::{AdminState, ControlError};
use crate::state::Shared;

use super::request::{Request, Response};

/// The body of a POST.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    state: Option<String>,
    weight: Option<u64>,
}

/// Everything under `/api/upstreams`.
pub fn handle(req: &Request, shared: &Shared) -> Response {
    let rest = req.path.strip_prefix("/api/upstreams").unwrap_or("");
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    match (req.method.as_str(), parts.as_slice()) {
        ("GET", []) => Response::json(&snapshot(shared)),
        ("GET", [name]) => match one(shared, name) {
            Some(u) => Response::json(&u),
            None => Response::error(
                404,
                &ControlError::UnknownUpstream(name.to_string()).to_string(),
            ),
        },
        ("POST", [name, "servers", addr]) => change(req, shared, name, addr),
        (_, [] | [_]) => not_allowed("GET"),
        (_, [_, "servers", _]) => not_allowed("POST"),
        _ => Response::error(404, "no such API path (see GET /api/upstreams)"),
    }
}

/// What `GET /api/upstreams` answers; also for embedding in other status documents.
pub fn snapshot(shared: &Shared) -> UpstreamsStatus {
    status::upstreams(&shared.control, &shared.stats)
}

fn one(shared: &Shared, name: &str) -> Option<status::UpstreamStatus> {
    snapshot(shared)
        .upstreams
        .into_iter()
        .find(|u| u.name == name)
}

fn not_allowed(allow: &'static str) -> Response {
    let mut r = Response::error(405, &format!("method not allowed here (allowed: {allow})"));
    r.headers.push(("Allow", allow.to_string()));
    r
}

/// Bearer token check: 401 without credentials, 403 with wrong ones or when no token is
/// usable (the reason says why).
fn authorize(req: &Request, shared: &Shared) -> Result<(), Response> {
    let token = Token::load(shared.config().admin_token_file.as_deref());
    if let Token::Unavailable(why) = &token {
        return Err(Response::error(403, why));
    }
    let presented = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer ").or(v.strip_prefix("bearer ")));
    match presented {
        None => {
            let mut r = Response::error(401, "missing Authorization: Bearer TOKEN");
            r.headers
                .push(("WWW-Authenticate", "Bearer realm=\"proxy\"".into()));
            Err(r)
        }
        Some(p) if token.accepts(p.trim()) => Ok(()),
        Some(_) => Err(Response::error(403, "wrong token")),
    }
}

fn change(req: &Request, shared: &Shared, upstream: &str, server: &str) -> Response {
    if let Err(r) = authorize(req, shared) {
        return r;
    }
    let change: Change = match serde_json::from_slice(&req.body) {
        Ok(c) => c,
        Err(e) => {
            return Response::error(
                400,
                &format!("body must be JSON like {{\"state\": \"drain\", \"weight\": 2}}: {e}"),
            )
        }
    };
    let state = match change.state.as_deref().map(|s| (s, AdminState::parse(s))) {
        None => None,
        Some((_, Some(s))) => Some(s),
        Some((other, None)) => {
            return Response::error(
                400,
                &format!("state \"{other}\" is not one of \"ready\", \"drain\", \"maint\""),
            )
        }
    };
    if state.is_none() && change.weight.is_none() {
        return Response::error(400, "nothing to change: give \"state\" and/or \"weight\"");
    }
    let result = shared
        .control
        .set_server(upstream, server, state, change.weight, Instant::now());
    match result {
        Ok(()) => {}
        Err(e @ ControlError::BadWeight(_)) => return Response::error(400, &e.to_string()),
        Err(e) => return Response::error(404, &e.to_string()),
    }
    let found = one(shared, upstream).and_then(|u| {
        u.servers
            .into_iter()
            .find(|s| s.address == server || s.resolved == server)
    });
    match found {
        Some(s) => Response::json(&s),
        None => Response::error(404, &format!("server \"{server}\" vanished (a reload?)")),
    }
}
