//! HTTPS: TLS terminated inside each worker, in front of the unchanged HTTP drivers.
//!
//! With `--certfile`/`--keyfile` every `--bind` listener speaks TLS. The worker's HTTP server
//! (whatever `--runtime`) then serves only an internal Unix socket, in a directory of its own
//! that only this user can enter (mode 0700, removed on exit). A "TLS front" thread, running a
//! current-thread tokio runtime, accepts on the real listeners, completes the rustls handshake
//! (within `--header-timeout`), connects to the internal socket, announces the client with a
//! PROXY protocol v2 header (its address, the listener's address, and a `PP2_TYPE_SSL` TLV so the
//! server sets `wsgi.url_scheme` to `https`) and then pumps bytes both ways.
//!
//! ```text
//! client ══TLS══▶ front thread (tokio + rustls) ──PROXY v2 + HTTP──▶ inner.sock ──▶ HTTP driver
//! ```
//!
//! Shutdown: the front stops accepting at once; its connections end as the HTTP server closes
//! them (a closed inner side closes the TLS stream with close_notify), within the grace period.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use adapter_std::Listener;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt, copy};
use tokio::net::UnixStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::logs::LineLog;

/// The PEM files `--certfile`, `--keyfile` and `--ca-certs` name.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    /// The server's certificate chain, leaf first.
    pub(crate) certfile: PathBuf,
    /// The server certificate's private key.
    pub(crate) keyfile: PathBuf,
    /// CA certificates client certificates must chain to; `None`: no client certificates.
    pub(crate) ca_certs: Option<PathBuf>,
}

impl TlsFiles {
    /// The TLS files from the command line: `None` without `--certfile`/`--keyfile`; an error
    /// when only one of the two, or `--ca-certs` alone, is given.
    pub(crate) fn from_options(
        certfile: Option<&Path>,
        keyfile: Option<&Path>,
        ca_certs: Option<&Path>,
    ) -> Result<Option<TlsFiles>, String> {
        match (certfile, keyfile) {
            (Some(certfile), Some(keyfile)) => Ok(Some(TlsFiles {
                certfile: certfile.to_owned(),
                keyfile: keyfile.to_owned(),
                ca_certs: ca_certs.map(Path::to_owned),
            })),
            (Some(certfile), None) => Err(format!(
                "--certfile {} needs --keyfile: name the PEM file with the certificate's \
                 private key too",
                certfile.display()
            )),
            (None, Some(keyfile)) => Err(format!(
                "--keyfile {} needs --certfile: name the PEM file with the server's \
                 certificate (chain) too",
                keyfile.display()
            )),
            (None, None) => match ca_certs {
                Some(ca) => Err(format!(
                    "--ca-certs {} verifies client certificates over TLS: give --certfile and \
                     --keyfile as well",
                    ca.display()
                )),
                None => Ok(None),
            },
        }
    }

    /// Loads and checks the files: the rustls server configuration every TLS listener uses.
    pub(crate) fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let certs = read_certificates(&self.certfile, "--certfile")?;
        let key = PrivateKeyDer::from_pem_file(&self.keyfile).map_err(|e| {
            pem_error(&self.keyfile, "--keyfile", "PEM private key (PKCS#8, PKCS#1 or SEC1)", e)
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
        let builder = match &self.ca_certs {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in read_certificates(path, "--ca-certs")? {
                    roots.add(cert).map_err(|e| {
                        format!(
                            "--ca-certs {}: a certificate in it is not a usable CA \
                             certificate ({e}); give PEM CA certificates",
                            path.display()
                        )
                    })?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.into(),
                    provider,
                )
                .build()
                .map_err(|e| format!("--ca-certs {}: {e}", path.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "--keyfile {} is not the private key of the certificate in --certfile {}: give \
                 the key the certificate was issued for",
                self.keyfile.display(),
                self.certfile.display()
            ),
            e => format!(
                "cannot use --certfile {} with --keyfile {}: {e}",
                self.certfile.display(),
                self.keyfile.display()
            ),
        })?;
        // The inner server speaks HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Every certificate in the PEM file at `path`; an error if there is none.
fn read_certificates(path: &Path, option: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let what = "PEM certificate (-----BEGIN CERTIFICATE-----)";
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(path, option, what, e))?;
    if certs.is_empty() {
        return Err(format!("{option} {} holds no {what}: give a file with one", path.display()));
    }
    Ok(certs)
}

fn pem_error(path: &Path, option: &str, what: &str, e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => {
            format!(
                "cannot read {option} {}: {e}; give the path of a file with a {what}",
                path.display()
            )
        }
        Error::NoItemsFound => {
            format!("{option} {} holds no {what}: give a file with one", path.display())
        }
        e => format!(
            "{option} {} is not a valid PEM file ({e}); give a file with a {what}",
            path.display()
        ),
    }
}

/// A directory only this user can enter, removed (with what is in it) on drop.
#[derive(Debug)]
struct PrivateDir(PathBuf);

/// The stem of the private directories' names: `$TMPDIR/wsgi-serve-tls.<pid>.<random>`.
pub(crate) const PRIVATE_DIR_STEM: &str = "wsgi-serve-tls";

impl PrivateDir {
    fn create() -> io::Result<PrivateDir> {
        // `create` fails if the name exists: the directory is ours, made with mode 0700.
        crate::tempname::create_unique(PRIVATE_DIR_STEM, |path| {
            std::fs::DirBuilder::new().mode(0o700).create(path).map(|()| PrivateDir(path.into()))
        })
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The TLS front of one worker: the thread terminating TLS on the `--bind` listeners.
#[derive(Debug)]
pub(crate) struct Front {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: PrivateDir,
}

/// What the front needs to serve: the TLS configuration and its time bounds.
pub(crate) struct FrontConfig {
    /// The rustls server configuration ([`TlsFiles::server_config`]).
    pub(crate) tls: Arc<rustls::ServerConfig>,
    /// How long a client has to complete the handshake (`--header-timeout`).
    pub(crate) handshake_timeout: Duration,
    /// How long one write to a client may wait for it to read (`--timeout`): the front's part
    /// of the I/O timeout, since the server's side of a TLS connection is the front's socket.
    pub(crate) io_timeout: Duration,
    /// How long connections in flight may take to finish after [`Front::stop_accepting`].
    pub(crate) graceful_timeout: Duration,
}

impl Front {
    /// Starts the front on `listeners`; returns it and the internal listener the HTTP server
    /// must serve (with PROXY protocol parsing on).
    pub(crate) fn start(
        listeners: Vec<Listener>,
        config: FrontConfig,
        log: Arc<LineLog>,
    ) -> Result<(Front, Listener), String> {
        let dir = PrivateDir::create()
            .map_err(|e| format!("cannot create a private directory for the TLS front: {e}"))?;
        let inner_path = dir.0.join("inner.sock");
        let inner = Listener::bind_unix(&inner_path).map_err(|e| {
            format!("cannot bind the TLS front's socket {}: {e}", inner_path.display())
        })?;
        for l in &listeners {
            match l {
                Listener::Tcp(l) => l.set_nonblocking(true),
                Listener::Unix(l, _) => l.set_nonblocking(true),
            }
            .map_err(|e| format!("cannot set up {}: {e}", l.describe()))?;
        }
        let (stop, stopped) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the TLS front's tokio runtime: {e}"))?;
        // Registered with the runtime here, so a listener it cannot watch fails the worker's
        // start (and stops the supervisor) rather than leaving a worker that serves nothing.
        let listeners = {
            let _entered = runtime.enter();
            listeners
                .into_iter()
                .map(|l| {
                    let name = l.describe();
                    AsyncListener::new(l).map_err(|e| format!("cannot watch {name}: {e}"))
                })
                .collect::<Result<Vec<_>, String>>()?
        };
        let thread = std::thread::Builder::new()
            .name("wsgi-tls-front".to_owned())
            .spawn(move || {
                runtime.block_on(run_front(listeners, config, inner_path, stopped, log));
            })
            .map_err(|e| format!("cannot start the TLS front: {e}"))?;
        Ok((Front { stop, thread: Some(thread), _dir: dir }, inner))
    }

    /// Stops accepting connections at once; those in flight go on until the server closes
    /// them or the grace period ends.
    pub(crate) fn stop_accepting(&self) {
        let _ = self.stop.send(true);
    }

    /// A closure calling [`Front::stop_accepting`], for the signal thread.
    pub(crate) fn stopper(&self) -> impl FnOnce() + Send + 'static {
        let stop = self.stop.clone();
        move || {
            let _ = stop.send(true);
        }
    }

    /// Stops accepting and waits for the front's connections to end (bounded by the grace
    /// period); then the private directory is removed.
    pub(crate) fn finish(mut self) {
        self.stop_accepting();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The front's event loop: accepts on every listener until stopped, then drains.
async fn run_front(
    listeners: Vec<AsyncListener>,
    config: FrontConfig,
    inner: PathBuf,
    mut stopped: watch::Receiver<bool>,
    log: Arc<LineLog>,
) {
    let acceptor = TlsAcceptor::from(config.tls);
    let (accepted, mut incoming) = tokio::sync::mpsc::channel::<Accepted>(64);
    let mut accept_loops = JoinSet::new();
    for listener in listeners {
        let accepted = accepted.clone();
        let log = log.clone();
        accept_loops.spawn(async move { listener.accept_loop(accepted, &log).await });
    }
    drop(accepted);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => break,
            Some(conn) = incoming.recv() => {
                connections.spawn(serve_connection(
                    conn,
                    acceptor.clone(),
                    inner.clone(),
                    Timeouts { handshake: config.handshake_timeout, io: config.io_timeout },
                    log.clone(),
                ));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            else => break,
        }
    }
    // Stop accepting at once: the listeners close in this worker (other workers keep theirs).
    accept_loops.shutdown().await;
    drop(incoming);
    let drain = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(config.graceful_timeout, drain).await;
    connections.shutdown().await;
}

/// One accepted client: its stream and the PROXY header's addresses.
struct Accepted {
    stream: AnyStream,
    addresses: ProxyAddresses,
}

enum AsyncListener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, PathBuf),
}

impl AsyncListener {
    fn new(listener: Listener) -> io::Result<AsyncListener> {
        Ok(match listener {
            Listener::Tcp(l) => AsyncListener::Tcp(tokio::net::TcpListener::from_std(l)?),
            Listener::Unix(l, path) => {
                AsyncListener::Unix(tokio::net::UnixListener::from_std(l)?, path)
            }
        })
    }

    async fn accept(&self) -> io::Result<Accepted> {
        match self {
            AsyncListener::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                stream.set_nodelay(true)?;
                let local = stream.local_addr()?;
                Ok(Accepted {
                    stream: AnyStream::Tcp(stream),
                    addresses: ProxyAddresses::Tcp { source: peer, destination: local },
                })
            }
            AsyncListener::Unix(l, path) => {
                let (stream, _) = l.accept().await?;
                Ok(Accepted {
                    stream: AnyStream::Unix(stream),
                    addresses: ProxyAddresses::Unix {
                        source: PathBuf::new(),
                        destination: path.clone(),
                    },
                })
            }
        }
    }

    /// Accepts until the receiving end is gone; a failed accept (e.g. out of descriptors)
    /// waits a little instead of spinning.
    async fn accept_loop(self, accepted: tokio::sync::mpsc::Sender<Accepted>, log: &LineLog) {
        loop {
            match self.accept().await {
                Ok(conn) => {
                    if accepted.send(conn).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    log.info(&format!("TLS front: accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

enum AnyStream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// Handshakes with one client, connects it to the inner server and pumps bytes until done.
async fn serve_connection(
    conn: Accepted,
    acceptor: TlsAcceptor,
    inner: PathBuf,
    timeouts: Timeouts,
    log: Arc<LineLog>,
) {
    let result = match conn.stream {
        AnyStream::Tcp(s) => relay(acceptor, s, &conn.addresses, &inner, timeouts).await,
        AnyStream::Unix(s) => relay(acceptor, s, &conn.addresses, &inner, timeouts).await,
    };
    if let Err(e) = result {
        log.debug(&format!("TLS connection from {}: {e}", conn.addresses.describe_source()));
    }
}

/// The front's deadlines for one connection.
#[derive(Clone, Copy, Debug)]
struct Timeouts {
    handshake: Duration,
    io: Duration,
}

async fn relay<S>(
    acceptor: TlsAcceptor,
    stream: S,
    addresses: &ProxyAddresses,
    inner: &Path,
    timeouts: Timeouts,
) -> io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let tls = tokio::time::timeout(timeouts.handshake, acceptor.accept(stream)).await.map_err(
        |_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake not completed in time"),
    )??;
    let ssl = SslInfo::of(&tls);
    let mut upstream = UnixStream::connect(inner).await?;
    upstream.write_all(&proxy_v2_header(addresses, &ssl)).await?;
    pump(tls, upstream, timeouts.io).await
}

/// Copies bytes both ways. When the server closes, the TLS stream is closed (close_notify)
/// and the connection ends; when the client closes its side, the server sees end-of-input and
/// the server's side is copied to its end. A client that reads nothing for `io_timeout` while
/// the server has bytes for it is dropped, as the HTTP drivers drop a plain one.
async fn pump<S>(
    tls: TlsStream<S>,
    mut upstream: UnixStream,
    io_timeout: Duration,
) -> io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut tls_read, mut tls_write) = tokio::io::split(tls);
    let (mut up_read, mut up_write) = upstream.split();
    let to_client = async {
        let copied = copy_to_client(&mut up_read, &mut tls_write, io_timeout).await;
        let closed = within(io_timeout, tls_write.shutdown()).await;
        copied.and(closed)
    };
    let to_server = async {
        let copied = copy(&mut tls_read, &mut up_write).await;
        let _ = up_write.shutdown().await;
        copied
    };
    tokio::pin!(to_client, to_server);
    tokio::select! {
        done = &mut to_client => done.map(drop),
        done = &mut to_server => {
            let answered = to_client.await;
            done.and(answered).map(drop)
        }
    }
}

/// Copies the server's bytes to the client, each write bounded by `io_timeout`.
async fn copy_to_client<R, W>(
    reader: &mut R,
    writer: &mut W,
    io_timeout: Duration,
) -> io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        within(io_timeout, async {
            writer.write_all(&buf[..n]).await?;
            writer.flush().await
        })
        .await?;
    }
}

/// Runs an I/O step toward the client, failing with `TimedOut` past `limit`.
async fn within(limit: Duration, step: impl Future<Output = io::Result<()>>) -> io::Result<()> {
    tokio::time::timeout(limit, step).await.map_err(|_| {
        io::Error::new(io::ErrorKind::TimedOut, "the client read nothing for --timeout")
    })?
}

/// The endpoints a PROXY header reports: the client (source) and the listener (destination).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProxyAddresses {
    /// TCP over IPv4 or IPv6 (both addresses of one family; a mix is sent as IPv6, mapped).
    Tcp { source: SocketAddr, destination: SocketAddr },
    /// A Unix stream socket: the paths (an unnamed client has an empty one).
    Unix { source: PathBuf, destination: PathBuf },
}

impl ProxyAddresses {
    fn describe_source(&self) -> String {
        match self {
            ProxyAddresses::Tcp { source, .. } => source.to_string(),
            ProxyAddresses::Unix { destination, .. } => format!("unix:{}", destination.display()),
        }
    }
}

/// What the `PP2_TYPE_SSL` TLV reports about the TLS session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SslInfo {
    /// The client presented a certificate on this connection (a full handshake).
    pub(crate) cert_on_connection: bool,
    /// The client presented a certificate in this TLS session (possibly resumed).
    pub(crate) cert_in_session: bool,
    /// The client's certificate was verified (rustls only completes a handshake with a valid
    /// one, so this is `cert_in_session`).
    pub(crate) verified: bool,
    /// The protocol version, e.g. `TLSv1.3` (sub-TLV `PP2_SUBTYPE_SSL_VERSION`).
    pub(crate) version: Option<String>,
    /// The cipher suite, e.g. `TLS13_AES_256_GCM_SHA384` (sub-TLV `PP2_SUBTYPE_SSL_CIPHER`).
    pub(crate) cipher: Option<String>,
}

impl SslInfo {
    fn of<S>(tls: &TlsStream<S>) -> SslInfo {
        let conn = tls.get_ref().1;
        let cert = conn.peer_certificates().is_some_and(|c| !c.is_empty());
        let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        SslInfo {
            cert_on_connection: cert && !resumed,
            cert_in_session: cert,
            verified: cert,
            version: conn.protocol_version().map(|v| match v {
                rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
                rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
                v => format!("{v:?}"),
            }),
            cipher: conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())),
        }
    }
}

/// The PROXY protocol v2 signature (haproxy's proxy-protocol.txt, section 2.2).
const PP2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 2, command PROXY.
const PP2_VERSION_PROXY: u8 = 0x21;
const PP2_AF_INET_STREAM: u8 = 0x11;
const PP2_AF_INET6_STREAM: u8 = 0x21;
const PP2_AF_UNIX_STREAM: u8 = 0x31;
const PP2_TYPE_SSL: u8 = 0x20;
const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
const PP2_SUBTYPE_SSL_CIPHER: u8 = 0x23;
const PP2_CLIENT_SSL: u8 = 0x01;
const PP2_CLIENT_CERT_CONN: u8 = 0x02;
const PP2_CLIENT_CERT_SESS: u8 = 0x04;
/// The size of a Unix socket path in the header (`sun_path`).
const UNIX_PATH_LEN: usize = 108;

/// Encodes a PROXY protocol v2 header: command PROXY, the addresses, and a `PP2_TYPE_SSL` TLV.
pub(crate) fn proxy_v2_header(addresses: &ProxyAddresses, ssl: &SslInfo) -> Vec<u8> {
    let mut body = Vec::with_capacity(128);
    let family = match addresses {
        ProxyAddresses::Tcp { source: SocketAddr::V4(s), destination: SocketAddr::V4(d) } => {
            body.extend_from_slice(&s.ip().octets());
            body.extend_from_slice(&d.ip().octets());
            body.extend_from_slice(&s.port().to_be_bytes());
            body.extend_from_slice(&d.port().to_be_bytes());
            PP2_AF_INET_STREAM
        }
        ProxyAddresses::Tcp { source, destination } => {
            let v6 = |a: &SocketAddr| match a {
                SocketAddr::V4(a) => a.ip().to_ipv6_mapped(),
                SocketAddr::V6(a) => *a.ip(),
            };
            body.extend_from_slice(&v6(source).octets());
            body.extend_from_slice(&v6(destination).octets());
            body.extend_from_slice(&source.port().to_be_bytes());
            body.extend_from_slice(&destination.port().to_be_bytes());
            PP2_AF_INET6_STREAM
        }
        ProxyAddresses::Unix { source, destination } => {
            for path in [source, destination] {
                let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
                // A path that does not fit (with its NUL) is sent unnamed.
                let bytes = if bytes.len() < UNIX_PATH_LEN { bytes } else { &[] };
                let start = body.len();
                body.extend_from_slice(bytes);
                body.resize(start + UNIX_PATH_LEN, 0);
            }
            PP2_AF_UNIX_STREAM
        }
    };
    let mut client = PP2_CLIENT_SSL;
    if ssl.cert_on_connection {
        client |= PP2_CLIENT_CERT_CONN;
    }
    if ssl.cert_in_session {
        client |= PP2_CLIENT_CERT_SESS;
    }
    let mut tlv = vec![client];
    // `verify`: zero if the client presented a certificate and it was verified.
    let verify: u32 = if ssl.cert_in_session && ssl.verified { 0 } else { 1 };
    tlv.extend_from_slice(&verify.to_be_bytes());
    for (kind, value) in
        [(PP2_SUBTYPE_SSL_VERSION, &ssl.version), (PP2_SUBTYPE_SSL_CIPHER, &ssl.cipher)]
    {
        if let Some(value) = value {
            push_tlv(&mut tlv, kind, value.as_bytes());
        }
    }
    push_tlv(&mut body, PP2_TYPE_SSL, &tlv);
    let mut header = Vec::with_capacity(16 + body.len());
    header.extend_from_slice(&PP2_SIGNATURE);
    header.push(PP2_VERSION_PROXY);
    header.push(family);
    // The body is at most 216 bytes of addresses plus short TLVs: it fits a u16.
    header.extend_from_slice(&u16::try_from(body.len()).unwrap_or(u16::MAX).to_be_bytes());
    header.extend_from_slice(&body);
    header
}

/// Appends a type-length-value entry; a value longer than 65535 bytes is cut.
fn push_tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    let value = &value[..value.len().min(usize::from(u16::MAX))];
    out.push(kind);
    out.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The v2 signature, as proxy-protocol.txt section 2.2 spells it byte by byte.
    const SIGNATURE: [u8; 12] =
        [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

    fn no_cert() -> SslInfo {
        SslInfo {
            cert_on_connection: false,
            cert_in_session: false,
            verified: false,
            version: None,
            cipher: None,
        }
    }

    #[test]
    fn ipv4_header_has_the_addresses_and_an_ssl_tlv() {
        let addresses = ProxyAddresses::Tcp {
            source: "127.0.0.1:51234".parse().unwrap(),
            destination: "127.0.0.2:443".parse().unwrap(),
        };
        let mut want = SIGNATURE.to_vec();
        want.extend_from_slice(&[
            0x21, // version 2, PROXY
            0x11, // TCP over IPv4
            0x00, 0x14, // 12 bytes of addresses + 8 of TLV
            127, 0, 0, 1, // source address
            127, 0, 0, 2, // destination address
            0xC8, 0x22, // source port 51234
            0x01, 0xBB, // destination port 443
            0x20, 0x00, 0x05, // PP2_TYPE_SSL, 5 bytes
            0x01, // client: PP2_CLIENT_SSL
            0x00, 0x00, 0x00, 0x01, // verify: non-zero, no client certificate
        ]);
        assert_eq!(proxy_v2_header(&addresses, &no_cert()), want);
    }

    #[test]
    fn the_server_reads_what_the_front_writes() {
        // Round trip through wsgi-core's parser, the one the inner server runs.
        for (source, destination) in
            [("127.0.0.1:51234", "127.0.0.2:443"), ("[2001:db8::1]:8080", "[2001:db8::7]:8443")]
        {
            let addresses = ProxyAddresses::Tcp {
                source: source.parse().unwrap(),
                destination: destination.parse().unwrap(),
            };
            let mut wire = proxy_v2_header(&addresses, &no_cert());
            let len = wire.len();
            wire.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let (header, n) = wsgi_core::parse_proxy_header(&wire).unwrap().unwrap();
            assert_eq!(n, len);
            assert_eq!(header.source, Some(source.parse().unwrap()));
            assert_eq!(header.destination, Some(destination.parse().unwrap()));
            assert!(header.tls);
        }
    }

    #[test]
    fn ipv6_header_and_a_verified_client_certificate() {
        let addresses = ProxyAddresses::Tcp {
            source: "[::1]:8080".parse().unwrap(),
            destination: "[2001:db8::7]:8443".parse().unwrap(),
        };
        let ssl = SslInfo {
            cert_on_connection: true,
            cert_in_session: true,
            verified: true,
            version: Some("TLSv1.3".to_owned()),
            cipher: Some("X".to_owned()),
        };
        let mut want = SIGNATURE.to_vec();
        want.extend_from_slice(&[0x21, 0x21, 0x00, 0x24 + 3 + 5 + 10 + 4]);
        want.extend_from_slice(&[0; 15]);
        want.push(1); // ::1
        want.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07]);
        want.extend_from_slice(&[0x1F, 0x90, 0x20, 0xFB]); // ports 8080, 8443
        want.extend_from_slice(&[0x20, 0x00, 5 + 10 + 4]); // PP2_TYPE_SSL
        want.push(0x01 | 0x02 | 0x04); // PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | _CERT_SESS
        want.extend_from_slice(&[0, 0, 0, 0]); // verify: 0, verified
        want.extend_from_slice(&[0x21, 0x00, 0x07]); // PP2_SUBTYPE_SSL_VERSION
        want.extend_from_slice(b"TLSv1.3");
        want.extend_from_slice(&[0x23, 0x00, 0x01, b'X']); // PP2_SUBTYPE_SSL_CIPHER
        assert_eq!(proxy_v2_header(&addresses, &ssl), want);
    }

    #[test]
    fn a_resumed_session_reports_its_certificate_for_the_session_only() {
        let addresses = ProxyAddresses::Tcp {
            source: "10.0.0.1:1".parse().unwrap(),
            destination: "10.0.0.2:2".parse().unwrap(),
        };
        let ssl = SslInfo { cert_in_session: true, verified: true, ..no_cert() };
        let header = proxy_v2_header(&addresses, &ssl);
        // signature, ver/cmd, family, length, 12 bytes of addresses, then the TLV.
        assert_eq!(&header[28..36], &[0x20, 0x00, 0x05, 0x01 | 0x04, 0, 0, 0, 0]);
    }

    #[test]
    fn mixed_families_are_sent_as_ipv6_with_the_ipv4_address_mapped() {
        let addresses = ProxyAddresses::Tcp {
            source: "192.0.2.1:1000".parse().unwrap(),
            destination: "[::1]:443".parse().unwrap(),
        };
        let header = proxy_v2_header(&addresses, &no_cert());
        assert_eq!(header[13], 0x21);
        assert_eq!(&header[16..32], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 192, 0, 2, 1]);
        assert_eq!(&header[48..52], &[0x03, 0xE8, 0x01, 0xBB]);
    }

    #[test]
    fn unix_header_pads_both_paths_to_108_bytes() {
        let addresses = ProxyAddresses::Unix {
            source: PathBuf::new(),
            destination: PathBuf::from("/run/app.sock"),
        };
        let header = proxy_v2_header(&addresses, &no_cert());
        assert_eq!(&header[..12], &SIGNATURE);
        assert_eq!(&header[12..16], &[0x21, 0x31, 0x00, 216 + 8]);
        assert_eq!(&header[16..16 + 108], &[0; 108]);
        let destination = &header[124..232];
        assert_eq!(&destination[..13], b"/run/app.sock");
        assert!(destination[13..].iter().all(|b| *b == 0));
        assert_eq!(&header[232..], &[0x20, 0x00, 0x05, 0x01, 0, 0, 0, 1]);
        assert_eq!(header.len(), 16 + 216 + 8);
    }

    #[test]
    fn options_must_come_in_pairs() {
        let cert = Path::new("cert.pem");
        let key = Path::new("key.pem");
        let ca = Path::new("ca.pem");
        assert!(TlsFiles::from_options(None, None, None).unwrap().is_none());
        let files = TlsFiles::from_options(Some(cert), Some(key), Some(ca)).unwrap().unwrap();
        assert_eq!(files.ca_certs.as_deref(), Some(ca));
        let e = TlsFiles::from_options(Some(cert), None, None).unwrap_err();
        assert!(e.contains("--certfile cert.pem needs --keyfile"), "{e}");
        let e = TlsFiles::from_options(None, Some(key), None).unwrap_err();
        assert!(e.contains("--keyfile key.pem needs --certfile"), "{e}");
        let e = TlsFiles::from_options(None, None, Some(ca)).unwrap_err();
        assert!(e.contains("--ca-certs ca.pem") && e.contains("--certfile"), "{e}");
    }

    #[test]
    fn unreadable_and_empty_files_are_named_in_the_error() {
        let dir = PrivateDir::create().unwrap();
        let empty = dir.0.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let missing = dir.0.join("missing.pem");
        let files = |certfile: &Path, keyfile: &Path| TlsFiles {
            certfile: certfile.to_owned(),
            keyfile: keyfile.to_owned(),
            ca_certs: None,
        };
        let e = files(&missing, &empty).server_config().unwrap_err();
        assert!(e.starts_with(&format!("cannot read --certfile {}", missing.display())), "{e}");
        let e = files(&empty, &empty).server_config().unwrap_err();
        assert!(e.contains(&format!("--certfile {} holds no PEM certificate", empty.display())));
    }

    #[test]
    fn the_private_directory_is_only_ours_and_goes_away() {
        use std::os::unix::fs::PermissionsExt;
        let dir = PrivateDir::create().unwrap();
        let path = dir.0.clone();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::write(path.join("inner.sock"), b"").unwrap();
        drop(dir);
        assert!(!path.exists());
    }
}
