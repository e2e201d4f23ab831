//! HTTPS: HTTP/2 and HTTP/1.1 by ALPN on one port, secure websockets,
//! certificates read again on SIGHUP without dropping connections, and
//! one-line start-up errors for unusable certificate files.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cyclone_tests::{Cyclone, components, manifest, run_to_exit};
use http_body_util::{BodyExt, Empty};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// A self-signed certificate for `localhost` and 127.0.0.1: its PEM, its
/// key's PEM, and its DER for a client to trust.
struct SelfSigned {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn self_signed() -> SelfSigned {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("making a certificate");
    SelfSigned {
        cert_pem: made.cert.pem(),
        key_pem: made.signing_key.serialize_pem(),
        der: made.cert.der().clone(),
    }
}

impl SelfSigned {
    fn write(&self, folder: &Path) {
        std::fs::write(folder.join("cert.pem"), &self.cert_pem).unwrap();
        std::fs::write(folder.join("key.pem"), &self.key_pem).unwrap();
    }
}

/// The probe guest at every path, over HTTPS with `folder/cert.pem` and
/// `folder/key.pem`.
fn https_manifest(cert: &SelfSigned) -> (tempfile::TempDir, PathBuf) {
    let (dir, path) = manifest(&format!(
        "[server]\ntls = {{ cert = \"cert.pem\", key = \"key.pem\" }}\n\
         [apps.probe]\ncomponent = {:?}\nroutes = [\"/...\"]\n",
        components::PROBE,
    ));
    cert.write(dir.path());
    (dir, path)
}

/// A client configuration that trusts `cert` alone and offers `alpn`.
fn client_config(cert: &CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A blocking TLS connection to `addr` that trusts `cert` alone.
fn connect(
    addr: &str,
    cert: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let name = ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(client_config(cert, alpn), name)
        .map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    // Finish the handshake now, so a certificate the client refuses is an error here.
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// One HTTP/1.1 request on an open TLS connection, kept alive: the
/// response's status line and body.
fn get_on(stream: &mut impl ReadWrite, path: &str) -> (String, String) {
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    stream.flush().unwrap();
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        stream
            .read_exact(&mut byte)
            .expect("reading the response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .expect("a content-length");
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    let status = head.lines().next().unwrap().to_owned();
    (status, String::from_utf8(body).unwrap())
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A GET over HTTPS with hyper, speaking the protocol ALPN chose: the HTTP
/// version, status and body.
fn hyper_get(
    addr: &str,
    cert: &CertificateDer<'static>,
    alpn: &[&[u8]],
    path: &str,
) -> (http::Version, u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(client_config(cert, alpn));
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("the TLS handshake");
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        let io = hyper_util::rt::TokioIo::new(tls);
        let request = http::Request::get(format!("https://localhost{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = if h2 {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(connection);
            let mut request = request;
            *request.uri_mut() = path.parse().unwrap();
            request
                .headers_mut()
                .insert(http::header::HOST, "localhost".parse().unwrap());
            sender.send_request(request).await.unwrap()
        };
        let version = response.version();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (version, status, String::from_utf8_lossy(&body).into_owned())
    })
}

#[test]
fn https_speaks_http2_and_http1_on_one_port_by_alpn() {
    let cert = self_signed();
    let (_dir, path) = https_manifest(&cert);
    let server = Cyclone::serve(&path);

    let (version, status, body) =
        hyper_get(server.addr(), &cert.der, &[b"h2", b"http/1.1"], "/echo");
    assert_eq!((version, status), (http::Version::HTTP_2, 200), "{body}");
    assert!(body.starts_with("GET /echo"), "{body}");

    let (version, status, body) = hyper_get(server.addr(), &cert.der, &[b"http/1.1"], "/echo");
    assert_eq!((version, status), (http::Version::HTTP_11, 200), "{body}");

    // Without ALPN the client gets HTTP/1.1.
    let (version, status, _) = hyper_get(server.addr(), &cert.der, &[], "/echo");
    assert_eq!((version, status), (http::Version::HTTP_11, 200));

    // The guest sees the scheme it was reached by.
    let (_, _, uri) = hyper_get(server.addr(), &cert.der, &[b"h2"], "/uri?x=1");
    assert!(uri.starts_with("https://"), "{uri}");
    assert!(uri.ends_with("/uri?x=1"), "{uri}");
}

#[test]
fn plain_http_and_an_untrusted_certificate_are_refused_and_serving_goes_on() {
    let cert = self_signed();
    let (_dir, path) = https_manifest(&cert);
    let server = Cyclone::serve(&path);

    // Plain HTTP to the HTTPS port: the connection closes, nothing is served.
    let mut plain = TcpStream::connect(server.addr()).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    plain
        .write_all(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("GET /echo"),
        "plain HTTP was served on the HTTPS port"
    );

    // A client that trusts another certificate refuses this one.
    let other = self_signed();
    assert!(connect(server.addr(), &other.der, &[b"http/1.1"]).is_err());

    let mut stream = connect(server.addr(), &cert.der, &[b"http/1.1"]).unwrap();
    let (status, body) = get_on(&mut stream, "/echo");
    assert!(status.contains("200"), "{status}");
    assert!(body.starts_with("GET /echo"), "{body}");
}

#[test]
fn sighup_reads_the_certificate_again_and_open_connections_stay() {
    let first = self_signed();
    let (dir, path) = https_manifest(&first);
    let server = Cyclone::serve(&path);

    let mut kept = connect(server.addr(), &first.der, &[b"http/1.1"]).unwrap();
    let (status, _) = get_on(&mut kept, "/echo");
    assert!(status.contains("200"), "{status}");

    // The renewed certificate in files of new names: the manifest names
    // them, and the reload reads them without asking for a restart.
    let second = self_signed();
    std::fs::write(dir.path().join("cert2.pem"), &second.cert_pem).unwrap();
    std::fs::write(dir.path().join("key2.pem"), &second.key_pem).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("cert.pem", "cert2.pem")
            .replace("key.pem", "key2.pem"),
    )
    .unwrap();
    server.hangup();
    assert!(
        server.wait_for_log("TLS certificate reloaded", Duration::from_secs(60)),
        "no reload in the log: {:#?}",
        server.log()
    );

    // The connection opened before the reload goes on serving.
    let (status, body) = get_on(&mut kept, "/echo?again");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("again"), "{body}");
    // New connections get the new certificate, and only it.
    let (version, status, _) = hyper_get(server.addr(), &second.der, &[b"h2"], "/echo");
    assert_eq!((version, status), (http::Version::HTTP_2, 200));
    assert!(connect(server.addr(), &first.der, &[b"http/1.1"]).is_err());

    // A key that does not match is refused; the certificate in use stays.
    assert!(
        !server
            .log()
            .iter()
            .any(|line| line.contains("next restart")),
        "new certificate paths were taken for a restart-only change: {:#?}",
        server.log()
    );

    std::fs::write(dir.path().join("key2.pem"), &first.key_pem).unwrap();
    server.hangup();
    assert!(
        server.wait_for_log(
            "does not belong to the certificate",
            Duration::from_secs(60)
        ),
        "no refusal in the log: {:#?}",
        server.log()
    );
    let (_, status, _) = hyper_get(server.addr(), &second.der, &[b"http/1.1"], "/echo");
    assert_eq!(status, 200);
    let (status, _) = get_on(&mut kept, "/echo");
    assert!(status.contains("200"), "{status}");
}

#[test]
fn websockets_open_over_tls_from_their_own_https_origin() {
    let cert = self_signed();
    let (dir, path) = manifest(&format!(
        "[server]\ntls = {{ cert = \"cert.pem\", key = \"key.pem\" }}\n\
         [apps.ws]\ncomponent = {:?}\nroutes = [\"/...\"]\n",
        components::SOCKETS,
    ));
    cert.write(dir.path());
    let server = Cyclone::serve(&path);
    let port = server.addr().rsplit(':').next().unwrap().to_owned();

    let handshake = |origin: &str| {
        let stream = connect(server.addr(), &cert.der, &[b"http/1.1"]).unwrap();
        let request = http::Request::get(format!("wss://localhost:{port}/echo"))
            .header("Host", format!("localhost:{port}"))
            .header("Origin", origin)
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header(
                "Sec-WebSocket-Key",
                tungstenite::handshake::client::generate_key(),
            )
            .body(())
            .unwrap();
        // The socket, or the status of a refusal.
        match tungstenite::client(request, stream) {
            Ok((socket, _)) => Ok(socket),
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                Err(response.status().as_u16())
            }
            Err(e) => panic!("the handshake failed: {e}"),
        }
    };

    let mut socket = handshake(&format!("https://localhost:{port}"))
        .expect("a page from the server's own https origin opens a session");
    socket.send(tungstenite::Message::text("over tls")).unwrap();
    let echoed = loop {
        match socket.read().unwrap() {
            tungstenite::Message::Text(text) => break text.to_string(),
            _ => continue,
        }
    };
    assert!(echoed.contains("over tls"), "{echoed}");

    // The same host and port over plain http is another origin.
    assert_eq!(
        handshake(&format!("http://localhost:{port}")).err(),
        Some(403)
    );
}

#[test]
fn unusable_certificate_files_are_one_line_start_up_errors() {
    let cert = self_signed();
    let check = |edit: &dyn Fn(&Path), expect: &[&str]| {
        let (dir, path) = https_manifest(&cert);
        edit(dir.path());
        let (status, stderr) = run_to_exit(&[
            "serve".as_ref(),
            path.as_os_str(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
        ]);
        assert!(!status.success(), "started anyway: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        let error = errors[0];
        assert!(error.starts_with("error: server.tls: "), "{stderr}");
        for part in expect {
            assert!(error.contains(part), "{part:?} not in {error:?}");
        }
    };
    check(
        &|dir| std::fs::remove_file(dir.join("key.pem")).unwrap(),
        &["key.pem", "No such file"],
    );
    check(
        &|dir| std::fs::remove_file(dir.join("cert.pem")).unwrap(),
        &["cert.pem", "No such file"],
    );
    let other = self_signed();
    check(
        &|dir| std::fs::write(dir.join("key.pem"), &other.key_pem).unwrap(),
        &[
            "key.pem",
            "does not belong to the certificate in",
            "cert.pem",
        ],
    );
    check(
        &|dir| std::fs::write(dir.join("cert.pem"), "not a certificate\n").unwrap(),
        &["cert.pem", "no PEM certificate"],
    );
}

#[test]
fn the_hello_example_serves_over_https_with_its_tls_manifest() {
    let cert = self_signed();
    let (dir, path) =
        cyclone_tests::example_manifest_file("hello", "cyclone-tls.toml", components::HELLO, &[]);
    cert.write(dir.path());
    let server = Cyclone::serve(&path);
    let (version, status, body) = hyper_get(server.addr(), &cert.der, &[b"h2"], "/");
    assert_eq!((version, status), (http::Version::HTTP_2, 200));
    assert_eq!(body, "Hello, world!");
}
