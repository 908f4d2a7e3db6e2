//! The HTTP upgrade that starts a streaming session: SPDY/3.1 (with a stream protocol from
//! `X-Stream-Protocol-Version`) or WebSocket (with a subprotocol from
//! `Sec-WebSocket-Protocol`), chosen as the client prefers among what the endpoint speaks.

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::{Body, text};
use crate::stream::websocket;

/// The transport a client is switched to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade {
    /// SPDY/3.1 with this stream protocol.
    Spdy(String),
    /// WebSocket with this subprotocol (empty: the client named none).
    WebSocket {
        /// The subprotocol.
        protocol: String,
        /// The client's `Sec-WebSocket-Key`.
        key: String,
    },
}

fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Chooses the transport of a request, or the answer refusing it.
pub fn negotiate(
    headers: &HeaderMap,
    spdy: &[&str],
    websockets: &[&str],
) -> Result<Upgrade, Response<Body>> {
    let upgrade = values(headers, "upgrade");
    let refused = |offered: &[String], supported: &[&str]| {
        text(
            StatusCode::FORBIDDEN,
            &format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {supported:?}"
            ),
        )
    };
    if upgrade.iter().any(|u| u.eq_ignore_ascii_case("websocket")) {
        let key = headers
            .get("sec-websocket-key")
            .and_then(|k| k.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key"))?;
        let offered = values(headers, "sec-websocket-protocol");
        if offered.is_empty() {
            return Ok(Upgrade::WebSocket { protocol: String::new(), key });
        }
        return match websocket::choose(&offered, websockets) {
            Some(protocol) => Ok(Upgrade::WebSocket { protocol: protocol.to_string(), key }),
            None => Err(refused(&offered, websockets)),
        };
    }
    if upgrade.iter().any(|u| u.eq_ignore_ascii_case("SPDY/3.1")) {
        let offered = values(headers, "x-stream-protocol-version");
        if offered.is_empty() {
            return Err(text(
                StatusCode::BAD_REQUEST,
                "unable to upgrade: X-Stream-Protocol-Version is required",
            ));
        }
        return match offered.iter().find(|o| spdy.contains(&o.as_str())) {
            Some(protocol) => Ok(Upgrade::Spdy(protocol.clone())),
            None => Err(refused(&offered, spdy)),
        };
    }
    Err(text(
        StatusCode::BAD_REQUEST,
        "Upgrade request required: this endpoint speaks SPDY/3.1 or WebSocket",
    ))
}

/// The `101 Switching Protocols` answer for `upgrade`.
pub fn switching(upgrade: &Upgrade) -> Response<Body> {
    let mut response = text(StatusCode::SWITCHING_PROTOCOLS, "");
    *response.body_mut() = super::empty();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    match upgrade {
        Upgrade::Spdy(protocol) => {
            set("upgrade", "SPDY/3.1");
            if !protocol.is_empty() {
                set("x-stream-protocol-version", protocol);
            }
        }
        Upgrade::WebSocket { protocol, key } => {
            set("upgrade", "websocket");
            set("sec-websocket-accept", &websocket::accept_key(key));
            if !protocol.is_empty() {
                set("sec-websocket-protocol", protocol);
            }
        }
    }
    response
}

/// The connection once hyper hands it over after the `101`.
pub async fn connection(on: OnUpgrade) -> Option<TokioIo<Upgraded>> {
    match on.await {
        Ok(upgraded) => Some(TokioIo::new(upgraded)),
        Err(e) => {
            tracing::debug!(error = %e, "a streaming upgrade failed");
            None
        }
    }
}

/// A WebSocket on an upgraded connection, server side.
pub async fn websocket(io: TokioIo<Upgraded>) -> WebSocketStream<TokioIo<Upgraded>> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(websocket::MAX_MESSAGE))
        .max_frame_size(Some(websocket::MAX_MESSAGE));
    WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn spdy_takes_the_clients_first_known_protocol() {
        let request = headers(&[
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
            ("x-stream-protocol-version", "v3.channel.k8s.io"),
        ]);
        assert_eq!(
            negotiate(&request, &["v3.channel.k8s.io", "v4.channel.k8s.io"], &[]).ok(),
            Some(Upgrade::Spdy("v4.channel.k8s.io".into()))
        );
        let unknown = headers(&[("upgrade", "SPDY/3.1"), ("x-stream-protocol-version", "v9")]);
        let refused = negotiate(&unknown, &["v4.channel.k8s.io"], &[]).expect_err("refused");
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn websocket_answers_with_the_key_and_protocol() {
        let request = headers(&[
            ("upgrade", "websocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-protocol", "v5.channel.k8s.io, v4.channel.k8s.io"),
        ]);
        let upgrade =
            negotiate(&request, &[], &["v4.channel.k8s.io"]).expect("as the test sets up");
        let answer = switching(&upgrade);
        assert_eq!(answer.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(answer.headers()["sec-websocket-protocol"], "v4.channel.k8s.io");
        assert_eq!(answer.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let plain = headers(&[]);
        assert_eq!(
            negotiate(&plain, &[], &[]).expect_err("refused").status(),
            StatusCode::BAD_REQUEST
        );
    }
}
