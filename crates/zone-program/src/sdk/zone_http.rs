//! The local backend's HTTP client for `/sdk/invoke`: one POST per SDK call, keep-alive connections
//! reused from a small idle list.
//!
//! For an `http://` zone URL it speaks HTTP/1.1 through hyper directly. reqwest costs as much CPU per
//! call as the rest of the client path: its redirect layer re-parses the URL of every request (IDNA
//! host mapping included), its retry layer clones the request, and its pool races a connect against
//! every checkout. None of it is needed to reach one known host. An `https://` zone URL goes through
//! reqwest, which brings TLS.
//!
//! A request that a reused connection did not send (the zone closed it while idle) is sent once more
//! on a fresh connection; a request that was sent is never repeated.

use std::sync::Mutex;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long a new connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A reply as received: status, headers (lower-case names) and the whole body.
#[derive(Debug)]
pub struct HttpReply {
    /// The HTTP status code.
    pub status: u16,
    /// Header names (lower case) and values that are visible ASCII.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Why a POST got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Connecting, sending or receiving failed.
    #[error("transport failed")]
    Transport,
    /// The body is longer than allowed.
    #[error("response too large")]
    TooLarge,
}

/// The client of one `/sdk/invoke` URL.
pub struct ZoneHttp {
    inner: Inner,
}

enum Inner {
    Plain(PlainPool),
    Tls { client: reqwest::Client, url: reqwest::Url },
}

struct PlainPool {
    /// `host:port` to connect to.
    authority: String,
    /// The `Host` header.
    host: HeaderValue,
    /// The request target (path and query).
    target: Uri,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    max_idle: usize,
}

impl ZoneHttp {
    /// A client of `url` (`http://` or `https://`) keeping at most `max_idle` idle connections.
    pub fn new(url: &str, max_idle: usize) -> anyhow::Result<Self> {
        let parsed = reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("sdk.local.zone_url is not a URL: {e}"))?;
        let inner = match parsed.scheme() {
            "http" => {
                let host = parsed.host_str().ok_or_else(|| anyhow::anyhow!("sdk.local.zone_url has no host"))?;
                let port = parsed.port_or_known_default().unwrap_or(80);
                // An IPv6 host keeps its brackets in `host_str`, as both `connect` and `Host` want it.
                let authority = format!("{host}:{port}");
                Inner::Plain(PlainPool {
                    host: HeaderValue::try_from(authority.as_str())?,
                    target: match parsed.query() {
                        Some(query) => format!("{}?{query}", parsed.path()),
                        None => parsed.path().to_owned(),
                    }
                    .parse()?,
                    authority,
                    idle: Mutex::new(Vec::new()),
                    max_idle,
                })
            }
            _ => Inner::Tls {
                client: reqwest::Client::builder()
                    .pool_max_idle_per_host(max_idle)
                    .connect_timeout(CONNECT_TIMEOUT)
                    .build()?,
                url: parsed,
            },
        };
        Ok(Self { inner })
    }

    /// POSTs `body` with `headers` and reads the reply, refusing a body above `max_body` bytes. The
    /// body of a reply other than 200 is not read (the reply comes back with an empty body).
    pub async fn post(
        &self,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        max_body: usize,
    ) -> Result<HttpReply, HttpError> {
        match &self.inner {
            Inner::Plain(pool) => pool.post(headers, body, max_body).await,
            Inner::Tls { client, url } => {
                let mut req = client.post(url.clone());
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                let mut resp = req.body(body).send().await.map_err(|_| HttpError::Transport)?;
                let reply_headers = header_list(resp.headers());
                if resp.status() != reqwest::StatusCode::OK {
                    return Ok(HttpReply { status: resp.status().as_u16(), headers: reply_headers, body: Vec::new() });
                }
                let mut out = Vec::with_capacity(expected_len(resp.content_length(), max_body));
                while let Some(chunk) = resp.chunk().await.map_err(|_| HttpError::Transport)? {
                    append(&mut out, &chunk, max_body)?;
                }
                Ok(HttpReply { status: resp.status().as_u16(), headers: reply_headers, body: out })
            }
        }
    }
}

impl PlainPool {
    async fn post(
        &self,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        max_body: usize,
    ) -> Result<HttpReply, HttpError> {
        let mut req = Request::post(self.target.clone()).body(Full::new(Bytes::from(body))).expect("a valid request");
        let h = req.headers_mut();
        h.insert(hyper::header::HOST, self.host.clone());
        for (k, v) in headers {
            let name = HeaderName::try_from(k).map_err(|_| HttpError::Transport)?;
            h.insert(name, HeaderValue::try_from(v).map_err(|_| HttpError::Transport)?);
        }
        let (mut sender, reused) = match self.checkout().await {
            Some(sender) => (sender, true),
            None => (self.connect().await?, false),
        };
        let resp = match sender.try_send_request(req).await {
            Ok(resp) => resp,
            Err(mut e) => match e.take_message() {
                // Not sent: the idle connection had been closed by the zone. Once more, fresh.
                Some(req) if reused => {
                    sender = self.connect().await?;
                    sender.send_request(req).await.map_err(|_| HttpError::Transport)?
                }
                _ => return Err(HttpError::Transport),
            },
        };
        if resp.status() != hyper::StatusCode::OK {
            // The body of a failure is not read; its connection is not reused.
            return Ok(HttpReply {
                status: resp.status().as_u16(),
                headers: header_list(resp.headers()),
                body: Vec::new(),
            });
        }
        let reply = read(resp, max_body).await?;
        self.checkin(sender);
        Ok(reply)
    }

    /// An idle connection that is still open and ready, if any.
    async fn checkout(&self) -> Option<SendRequest<Full<Bytes>>> {
        loop {
            let mut sender = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn checkin(&self, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(sender);
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, HttpError> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.authority.as_str()))
            .await
            .map_err(|_| HttpError::Transport)?
            .map_err(|_| HttpError::Transport)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|_| HttpError::Transport)?;
        tokio::spawn(async move {
            // Ends when the zone closes the connection or the last sender is dropped.
            let _ = conn.await;
        });
        Ok(sender)
    }
}

async fn read(resp: Response<Incoming>, max_body: usize) -> Result<HttpReply, HttpError> {
    let (parts, mut body) = resp.into_parts();
    let length = parts.headers.get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    let mut out = Vec::with_capacity(expected_len(length, max_body));
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(|_| HttpError::Transport)?.into_data() {
            append(&mut out, &data, max_body)?;
        }
    }
    Ok(HttpReply { status: parts.status.as_u16(), headers: header_list(&parts.headers), body: out })
}

fn header_list(headers: &hyper::HeaderMap) -> Vec<(String, String)> {
    headers.iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect()
}

fn expected_len(content_length: Option<u64>, max_body: usize) -> usize {
    content_length.map_or(0, |n| n.min(max_body as u64) as usize)
}

fn append(out: &mut Vec<u8>, chunk: &[u8], max_body: usize) -> Result<(), HttpError> {
    if out.len() + chunk.len() > max_body {
        return Err(HttpError::TooLarge);
    }
    out.extend_from_slice(chunk);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::Router;
    use axum::extract::ConnectInfo;
    use axum::routing::post;

    use super::*;

    /// A server answering each POST with the client's port and the request body's length, padded
    /// to `pad` bytes; with `close`, every reply closes its connection.
    async fn server(pad: usize, close: bool) -> String {
        let app = Router::new().route(
            "/sdk/invoke",
            post(move |ConnectInfo(peer): ConnectInfo<SocketAddr>, body: Bytes| async move {
                let text = format!("{} {}", peer.port(), body.len());
                let text = format!("{text:<pad$}");
                let connection = if close { "close" } else { "keep-alive" };
                ([("connection", connection), ("x-test", "yes")], text)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
        });
        format!("http://{addr}/sdk/invoke")
    }

    fn port_of(reply: &HttpReply) -> String {
        String::from_utf8_lossy(&reply.body).split(' ').next().unwrap().to_owned()
    }

    #[tokio::test]
    async fn sequential_calls_reuse_one_connection_and_see_status_headers_and_body() {
        let client = ZoneHttp::new(&server(0, false).await, 4).unwrap();
        let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        let first = client.post(headers.clone(), b"abc".to_vec(), 1024).await.unwrap();
        let second = client.post(headers, b"abcdef".to_vec(), 1024).await.unwrap();
        assert_eq!(first.status, 200);
        assert!(first.headers.contains(&("x-test".to_owned(), "yes".to_owned())));
        assert!(String::from_utf8_lossy(&second.body).ends_with(" 6"), "the whole body arrived");
        assert_eq!(port_of(&first), port_of(&second), "one connection, kept alive");
    }

    #[tokio::test]
    async fn a_connection_the_zone_closed_is_replaced_without_failing_the_call() {
        let client = ZoneHttp::new(&server(0, true).await, 4).unwrap();
        let first = client.post(Vec::new(), Vec::new(), 1024).await.unwrap();
        let second = client.post(Vec::new(), Vec::new(), 1024).await.unwrap();
        assert_eq!((first.status, second.status), (200, 200));
        assert_ne!(port_of(&first), port_of(&second), "a new connection for the second call");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_and_the_next_call_works() {
        let client = ZoneHttp::new(&server(5000, false).await, 4).unwrap();
        assert_eq!(client.post(Vec::new(), Vec::new(), 4999).await.unwrap_err(), HttpError::TooLarge);
        assert_eq!(client.post(Vec::new(), Vec::new(), 5000).await.unwrap().body.len(), 5000);
    }

    #[tokio::test]
    async fn an_unreachable_zone_is_a_transport_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/sdk/invoke", listener.local_addr().unwrap());
        drop(listener);
        let client = ZoneHttp::new(&url, 4).unwrap();
        assert_eq!(client.post(Vec::new(), Vec::new(), 10).await.unwrap_err(), HttpError::Transport);
    }
}
