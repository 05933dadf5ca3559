//! The raw serde layer: exactly the keys proxy.toml accepts (`deny_unknown_fields`), each value
//! with its byte span so validation can point at it. Nested sections (`upstream`, `servers`,
//! `server`, `location`) are declared here as `IgnoredAny` and deserialized one by one by the
//! parent module, so an error in one section does not hide the errors in the others.

use std::fmt;

use serde::de::{self, IgnoredAny, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// A value that may be written as a string or an integer (`keepalive_timeout = "65s"` or `= 65`,
/// `workers = "auto"` or `= 4`); validation decides what each form means.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(String),
    Int(i64),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Str(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                i64::try_from(v)
                    .map(Scalar::Int)
                    .map_err(|_| E::custom("integer out of range"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Top level of proxy.toml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTop {
    pub workers: Option<Spanned<Scalar>>,
    pub pin_workers: Option<bool>,
    pub splice: Option<bool>,
    pub worker_connections: Option<Spanned<i64>>,
    pub client_body_temp_path: Option<Spanned<String>>,
    pub access_log: Option<Spanned<String>>,
    pub admin: Option<Spanned<String>>,
    pub vrrp_status: Option<Spanned<String>>,
    pub admin_token_file: Option<Spanned<String>>,
    pub state_file: Option<Spanned<String>>,
    /// `[upstream.NAME]` tables, handled one by one.
    #[serde(rename = "upstream")]
    pub _upstream: Option<IgnoredAny>,
    /// `[[server]]` tables, handled one by one.
    #[serde(rename = "server")]
    pub _server: Option<IgnoredAny>,
}

/// `[upstream.NAME]` (nginx `upstream NAME { ... }`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// Array of [`RawPeer`], handled one by one.
    #[serde(rename = "servers")]
    pub _servers: Option<IgnoredAny>,
    pub balance: Option<Spanned<String>>,
    pub keepalive: Option<Spanned<Scalar>>,
    pub keepalive_timeout: Option<Spanned<Scalar>>,
    pub connect_timeout: Option<Spanned<Scalar>>,
    pub read_timeout: Option<Spanned<Scalar>>,
    pub send_timeout: Option<Spanned<Scalar>>,
    pub health_check: Option<Spanned<RawHealthCheck>>,
    pub queue: Option<Spanned<i64>>,
    pub queue_timeout: Option<Spanned<Scalar>>,
}

/// `health_check = { uri, interval, timeout, fall, rise, expect }` (nginx Plus `health_check`,
/// HAProxy `check inter fall rise` + `http-check expect`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub uri: Option<Spanned<String>>,
    pub interval: Option<Spanned<Scalar>>,
    pub timeout: Option<Spanned<Scalar>>,
    pub fall: Option<Spanned<i64>>,
    pub rise: Option<Spanned<i64>>,
    pub expect: Option<Spanned<String>>,
}

/// One entry of `servers` (nginx `server ADDRESS weight=.. max_fails=.. ...;`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    pub address: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
    pub max_fails: Option<Spanned<i64>>,
    pub fail_timeout: Option<Spanned<Scalar>>,
    pub backup: Option<Spanned<bool>>,
    pub down: Option<bool>,
    pub max_conns: Option<Spanned<i64>>,
    pub slow_start: Option<Spanned<Scalar>>,
}

/// `[[server]]` (nginx `server { ... }`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Spanned<Vec<Spanned<String>>>>,
    pub client_header_timeout: Option<Spanned<Scalar>>,
    pub client_body_timeout: Option<Spanned<Scalar>>,
    pub client_max_body_size: Option<Spanned<Scalar>>,
    pub max_header_size: Option<Spanned<Scalar>>,
    pub keepalive_timeout: Option<Spanned<Scalar>>,
    pub client_body_buffer_size: Option<Spanned<Scalar>>,
    pub proxy_request_buffering: Option<bool>,
    /// `[[server.location]]` tables, handled one by one.
    #[serde(rename = "location")]
    pub _location: Option<IgnoredAny>,
}

/// `[[server.location]]` (nginx `location PATH { proxy_pass http://NAME; }`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocation {
    pub path: Spanned<String>,
    pub proxy_pass: Spanned<String>,
    pub proxy_request_buffering: Option<bool>,
}
