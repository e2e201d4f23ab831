//! Outbound HTTP from guests: the app's allow-list ([`AllowedHosts`], parsed
//! with the manifest) checked on the URL and again on every address its host
//! name resolves to, and the connection itself (TCP, TLS for `https`,
//! HTTP/1.1), kept in the app's [`Pool`] between requests.

mod pool;

pub use pool::Pool;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::Uri;
use http_body_util::BodyExt;
use hyper::body::Body as _;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use crate::config::AllowedHosts;

/// Connect and first-byte timeouts when the guest sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a pooled connection may take to be ready for the next request
/// before a new one is opened instead.
const READY_WAIT: Duration = Duration::from_secs(1);

/// Why an outbound request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No entry matches the URL's scheme, host and port.
    #[error("{0} is not in the app's allowed_outbound_hosts")]
    NotListed(String),
    /// The host is or resolves to a loopback, private or link-local address
    /// that no entry names literally.
    #[error(
        "{host} is the internal address {ip}, which allowed_outbound_hosts does not name explicitly"
    )]
    Internal {
        /// The host as the guest wrote it.
        host: String,
        /// The address it is or resolved to.
        ip: IpAddr,
    },
    /// The URL carries credentials (`user:password@host`).
    #[error("URLs with credentials (user@host) are refused; send them in a header instead")]
    Credentials,
    /// The URL has no host, or a scheme other than http and https.
    #[error("unsupported URL {0}")]
    BadUrl(String),
}

/// An upstream the app's list allows: where a request goes, and the key of
/// the pool's connections to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upstream {
    /// The host name or IP, lowercase, IPv6 without brackets.
    host: String,
    port: u16,
    tls: bool,
}

/// Checks `uri` against `allowed`: the upstream it names, or why not.
pub fn permit(allowed: &AllowedHosts, uri: &Uri) -> Result<Upstream, Denied> {
    let bad = || Denied::BadUrl(uri.to_string());
    let scheme = uri.scheme_str().ok_or_else(bad)?.to_ascii_lowercase();
    let tls = match scheme.as_str() {
        "https" => true,
        "http" => false,
        _ => return Err(bad()),
    };
    // The authority becomes the upstream's `Host` header: credentials in
    // it would be sent in the clear to whoever answers. Refused, not
    // stripped, so the guest learns its URL is wrong.
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(Denied::Credentials);
    }
    let host = uri.host().ok_or_else(bad)?.to_ascii_lowercase();
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    if allowed.matching(&scheme, &host, port).next().is_none() {
        return Err(Denied::NotListed(format!("{scheme}://{host}:{port}")));
    }
    Ok(Upstream { host, port, tls })
}

/// Resolves `upstream`'s host: the first address `allowed` lets it reach,
/// or why none.
pub async fn resolve(
    allowed: &AllowedHosts,
    upstream: &Upstream,
) -> Result<SocketAddr, CheckError> {
    let Upstream { host, port, tls } = upstream;
    let scheme = if *tls { "https" } else { "http" };
    let entries: Vec<_> = allowed.matching(scheme, host, *port).collect();
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, *port)],
        Err(_) => tokio::net::lookup_host((host.as_str(), *port))
            .await
            .map_err(|e| CheckError::Dns(format!("{host}: {e}")))?
            .collect(),
    };
    let explicit = |ip: IpAddr| entries.iter().any(|e| e.names(host, ip));
    let mut refused = None;
    for addr in addrs {
        if is_internal(addr.ip()) && !explicit(addr.ip()) {
            refused.get_or_insert(addr.ip());
            continue;
        }
        return Ok(addr);
    }
    Err(match refused {
        Some(ip) => CheckError::Denied(Denied::Internal {
            host: host.clone(),
            ip,
        }),
        None => CheckError::Dns(format!("{host}: no addresses")),
    })
}

/// Why [`resolve`] gave no address.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The policy refuses the request.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The host name did not resolve.
    #[error("DNS lookup failed: {0}")]
    Dns(String),
}

/// Loopback, private, link-local, shared, reserved and similar addresses:
/// the host's own network, which a wildcard entry must not reach. IPv6 forms
/// that carry an IPv4 address (mapped, compatible, translated, NAT64, 6to4)
/// are judged by that address.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0 // "this network"
                || a >= 240 // reserved, and the broadcast address
                || (a == 100 && (64..128).contains(&b)) // shared address space
                || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
                || (a == 198 && (b & 0xfe) == 18) // benchmarking
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                is_internal(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)))
            };
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated, still routed by some)
                // ::a.b.c.d (compatible) and ::ffff:a.b.c.d (mapped)
                || (s[..5] == [0; 5] && (s[5] == 0 || s[5] == 0xffff) && embedded(s[6], s[7]))
                // ::ffff:0:a.b.c.d (translated)
                || (s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 && embedded(s[6], s[7]))
                // 64:ff9b::a.b.c.d (NAT64) and 64:ff9b:1::/48 (local NAT64)
                || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && embedded(s[6], s[7]))
                || (s[..3] == [0x64, 0xff9b, 1])
                // 2002:aabb:ccdd::/48 (6to4 of a.b.c.d)
                || (s[0] == 0x2002 && embedded(s[1], s[2]))
        }
    }
}

/// Why [`send`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The upstream's host gave no address the app may reach.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// Connecting or the exchange failed.
    #[error("{0}")]
    Http(#[from] Error),
}

/// Sends `request` to `upstream`, on an idle connection from `pool` when it
/// has one, else on a new HTTP/1.1 connection to an address `allowed` lets
/// the app reach. The connection goes back to `pool` once the response body
/// has been read to its end.
pub async fn send(
    pool: &Arc<Pool>,
    allowed: &AllowedHosts,
    upstream: Upstream,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<http::Response<WasiBody>, SendError> {
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    let between_bytes_timeout = options
        .and_then(|o| o.between_bytes_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    // The wire carries only the path: the authority is in the Host header.
    *request.uri_mut() = request
        .uri()
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()));
    let timed_out = |_| Error::ConnectionReadTimeout;
    let (response, sender) = loop {
        let Some(mut sender) = pool.take(&upstream) else {
            let addr = resolve(allowed, &upstream).await?;
            let mut sender = connect(addr, &upstream, connect_timeout).await?;
            let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
                .await
                .map_err(timed_out)?
                .map_err(Error::from)?;
            break (response, sender);
        };
        // Ready means the connection finished its last exchange (its task
        // sees that at once); an error means the upstream closed it meanwhile.
        if !matches!(
            tokio::time::timeout(connect_timeout.min(READY_WAIT), sender.ready()).await,
            Ok(Ok(()))
        ) {
            continue;
        }
        match tokio::time::timeout(first_byte_timeout, sender.try_send_request(request))
            .await
            .map_err(timed_out)?
        {
            Ok(response) => break (response, sender),
            // Not written: the connection closed before it could take the
            // request, which goes out on the next one.
            Err(mut e) => match e.take_message() {
                Some(unsent) => request = unsent,
                None => return Err(Error::from(e.into_error()).into()),
            },
        }
    };
    // A connection whose response closes it is not kept: its task may not
    // have seen the close yet when the next request takes it from the pool,
    // and that request would meet a reset instead of a new connection.
    let parked = keeps_alive(&response).then(|| (pool.clone(), upstream, sender));
    Ok(response.map(|inner| {
        let mut body = BetweenBytes {
            inner,
            limit: between_bytes_timeout,
            deadline: Box::pin(tokio::time::sleep(between_bytes_timeout)),
            parked,
        };
        body.park_at_end();
        body.boxed_unsync()
    }))
}

/// Whether the connection may serve another request after `response`: an
/// HTTP/1.1 response without `Connection: close`.
fn keeps_alive<B>(response: &http::Response<B>) -> bool {
    let closes = response
        .headers()
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("close"));
    response.version() == http::Version::HTTP_11 && !closes
}

/// A new HTTP/1.1 connection to `upstream` at `addr`, TLS for `https`.
async fn connect(
    addr: SocketAddr,
    upstream: &Upstream,
    timeout: Duration,
) -> Result<SendRequest<WasiBody>, Error> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
            _ => Error::Connect(e),
        })?;
    let handshake = async {
        if upstream.tls {
            let name = ServerName::try_from(upstream.host.clone())
                .map_err(|_| Error::TlsCertificateError)?;
            let tls = tls_connector()
                .connect(name, tcp)
                .await
                .map_err(Error::Tls)?;
            handshake(TokioIo::new(tls)).await
        } else {
            handshake(TokioIo::new(tcp)).await
        }
    };
    tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| Error::ConnectionTimeout)?
}

/// A response body that fails when no frame arrives for `limit`, and once
/// read to its end parks its connection in the app's pool.
struct BetweenBytes {
    inner: hyper::body::Incoming,
    limit: Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The connection, until the body ends.
    parked: Option<(Arc<Pool>, Upstream, SendRequest<WasiBody>)>,
}

impl BetweenBytes {
    /// Hands the connection back to the pool if the body has ended. One
    /// dropped before its end takes the connection with it (hyper closes it).
    fn park_at_end(&mut self) {
        if self.inner.is_end_stream()
            && let Some((pool, upstream, sender)) = self.parked.take()
        {
            pool.put(upstream, sender);
        }
    }
}

impl Drop for BetweenBytes {
    fn drop(&mut self) {
        self.park_at_end();
    }
}

impl hyper::body::Body for BetweenBytes {
    type Data = bytes::Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Error>>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + self.limit;
                self.deadline.as_mut().reset(next);
                self.park_at_end();
                Poll::Ready(frame.map(|f| f.map_err(Error::from)))
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// An HTTP/1.1 handshake over `io`; the connection is driven by its own task,
/// which ends when the upstream closes it or its `SendRequest` is dropped.
async fn handshake<I>(io: I) -> Result<SendRequest<WasiBody>, Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(Error::from)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("outbound connection ended: {e}");
        }
    });
    Ok(sender)
}

/// TLS with the Mozilla root certificates, built once.
fn tls_connector() -> TlsConnector {
    static CONNECTOR: OnceLock<TlsConnector> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let config = ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            TlsConnector::from(Arc::new(config))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(list: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn only_an_http_1_1_response_that_does_not_close_keeps_its_connection() {
        let response = |version, connection: Option<&str>| {
            let mut builder = http::Response::builder().version(version);
            if let Some(value) = connection {
                builder = builder.header(http::header::CONNECTION, value);
            }
            builder.body(()).unwrap()
        };
        assert!(keeps_alive(&response(http::Version::HTTP_11, None)));
        assert!(keeps_alive(&response(
            http::Version::HTTP_11,
            Some("keep-alive")
        )));
        assert!(!keeps_alive(&response(
            http::Version::HTTP_11,
            Some("close")
        )));
        assert!(!keeps_alive(&response(
            http::Version::HTTP_11,
            Some("Upgrade, Close")
        )));
        assert!(!keeps_alive(&response(http::Version::HTTP_10, None)));
    }

    async fn check(list: &[&str], url: &str) -> Result<SocketAddr, String> {
        let allowed = allowed(list);
        let upstream = permit(&allowed, &url.parse().unwrap()).map_err(|e| e.to_string())?;
        resolve(&allowed, &upstream)
            .await
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn nothing_is_allowed_by_default() {
        let err = check(&[], "http://93.184.215.14/").await.unwrap_err();
        assert_eq!(
            err,
            "http://93.184.215.14:80 is not in the app's allowed_outbound_hosts"
        );
    }

    #[tokio::test]
    async fn entries_match_scheme_host_and_port() {
        let list = ["https://93.184.215.14", "http://*:8080"];
        assert!(check(&list, "https://93.184.215.14/x").await.is_ok());
        assert!(
            check(&list, "http://93.184.215.14/x").await.is_err(),
            "scheme"
        );
        assert!(
            check(&list, "https://93.184.215.14:8443/").await.is_err(),
            "port"
        );
        assert!(
            check(&list, "http://8.8.8.8:8080/").await.is_ok(),
            "wildcard host"
        );
    }

    #[tokio::test]
    async fn internal_addresses_need_a_literal_entry() {
        // A wildcard never reaches the host's own network...
        let wildcard = ["http://*:*"];
        for url in [
            "http://127.0.0.1:9000/",
            "http://10.1.2.3/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:9000/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
        ] {
            let err = check(&wildcard, url).await.unwrap_err();
            assert!(err.contains("internal address"), "{url}: {err}");
        }
        // ...also when a name resolves there.
        let err = check(&wildcard, "http://localhost:9000/")
            .await
            .unwrap_err();
        assert!(err.contains("localhost is the internal address"), "{err}");
        // An entry naming the address or the name literally reaches it.
        assert!(
            check(&["http://127.0.0.1:9000"], "http://127.0.0.1:9000/")
                .await
                .is_ok()
        );
        assert!(
            check(&["http://localhost:*"], "http://localhost:9000/")
                .await
                .is_ok()
        );
        assert!(
            check(&["http://127.0.0.1:*"], "http://localhost:9000/")
                .await
                .is_err()
        );
    }

    #[test]
    fn the_address_classifier_knows_every_internal_form() {
        let internal = [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b::10.1.2.3",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "2002:c0a8:101::1",
        ];
        for ip in internal {
            assert!(is_internal(ip.parse().unwrap()), "{ip} is internal");
        }
        let public = [
            "8.8.8.8",
            "93.184.215.14",
            "100.128.0.1",
            "192.0.1.1",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        for ip in public {
            assert!(!is_internal(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[tokio::test]
    async fn credentials_in_a_url_are_refused() {
        let list = ["http://*:*", "http://127.0.0.1:9000"];
        for url in [
            "http://user:secret@93.184.215.14/",
            "http://user@127.0.0.1:9000/",
        ] {
            let err = check(&list, url).await.unwrap_err();
            assert!(err.contains("credentials"), "{url}: {err}");
        }
    }
}
