//! `wsgi-serve`: serves a Python WSGI application. Option names follow gunicorn's.
//!
//! ```text
//! wsgi-serve                                   # the built-in hello app on 127.0.0.1:8000
//! wsgi-serve myproject.wsgi:application --bind 0.0.0.0:8000 --threads 8
//! ```

mod access;
mod activation;
mod logs;
mod pidfile;
mod supervisor;
mod tempname;
#[cfg(feature = "tls")]
mod tls;
mod watchdog;

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use adapter_std::{AccessLog, Listener, ServerConfig};
use clap::Parser;
use pyo3::prelude::*;
use wsgi_core::python::{AppSpec, PyApplication, PyOptions};
use wsgi_core::{Application, Config, TrustedProxies};

use access::{AccessFormat, AccessWriter};
use logs::{LineLog, LogLevel};

/// The app served when none is named: the classic WSGI hello world.
const HELLO_APP: &std::ffi::CStr = c"
def application(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain; charset=utf-8')])
    return [b'Hello WSGI World!\\n']
";

/// Serve a Python WSGI application (Flask, Django, any PEP 3333 callable).
///
/// Run it from your project directory, inside your virtualenv if you use one: the working
/// directory and the active virtualenv (VIRTUAL_ENV) are on sys.path.
#[derive(Parser, Debug)]
#[command(name = "wsgi-serve", version, about, long_about = None)]
struct Cli {
    /// The application: `module:attr` (e.g. `myproject.wsgi:application`), `module:factory()`
    /// or `path/to/file.py:attr`. Without it, a built-in hello app is served.
    app: Option<String>,

    /// Where to listen: `HOST:PORT`, `[::1]:PORT` or `unix:PATH`. Repeat to listen on several.
    /// Under systemd socket activation (LISTEN_PID is this process, LISTEN_FDS set), the sockets
    /// systemd passed are served instead.
    #[arg(short = 'b', long = "bind", value_name = "ADDRESS", default_value = "127.0.0.1:8000")]
    bind: Vec<String>,

    /// How many connections the kernel queues for acceptance (capped by net.core.somaxconn).
    #[arg(long, value_name = "INT", default_value_t = 2048)]
    backlog: u32,

    /// Worker processes, each with its own interpreter, sharing the listening sockets. A worker
    /// that dies is replaced; SIGHUP replaces them all without refusing a connection.
    #[arg(short = 'w', long, value_name = "INT", default_value_t = 1)]
    workers: usize,

    /// App threads per worker: requests handled at once. Idle keep-alive connections hold no
    /// thread. Python runs one thread at a time, so one thread takes requests while they finish
    /// within a millisecond (two take turns while requests take under some 20 µs); the others
    /// take requests while those block.
    #[arg(long, value_name = "INT", default_value_t = 1)]
    threads: usize,

    /// Change to this directory before loading the application.
    #[arg(long, value_name = "DIR")]
    chdir: Option<PathBuf>,

    /// Extra directories for sys.path, comma-separated.
    #[arg(long, value_name = "DIRS", value_delimiter = ',')]
    pythonpath: Vec<PathBuf>,

    /// Seconds a request may run inside the application before its worker is killed and
    /// replaced (0: never). Time waiting on the client does not count: it is bounded apart, as
    /// each request body read or response write may block this long before the client is
    /// dropped.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    timeout: u64,

    /// Seconds to let requests in flight finish after SIGTERM or SIGINT.
    #[arg(long = "graceful-timeout", value_name = "SECONDS", default_value_t = 30)]
    graceful_timeout: u64,

    /// Seconds an idle keep-alive connection is kept open.
    #[arg(long = "keep-alive", value_name = "SECONDS", default_value_t = 2)]
    keep_alive: u64,

    /// Requests a worker serves before it is replaced by a fresh one (0: never). The old worker
    /// finishes its requests in flight; connections queue for the new one meanwhile.
    #[arg(long = "max-requests", value_name = "INT", default_value_t = 0)]
    max_requests: u64,

    /// Adds a random 0..=INT to each worker's --max-requests, so workers do not all restart at
    /// once.
    #[arg(long = "max-requests-jitter", value_name = "INT", default_value_t = 0)]
    max_requests_jitter: u64,

    /// Seconds a client has to send a complete request head (from its connection, or from the
    /// first byte of a kept-alive request); past it the client gets 408 and is disconnected.
    /// This is what cuts slow-header (slowloris) clients.
    #[arg(long = "header-timeout", value_name = "SECONDS", default_value_t = 30)]
    header_timeout: u64,

    /// Longest request line in bytes (0: the built-in maximum, 65536); longer is answered 414.
    #[arg(long = "limit-request-line", value_name = "BYTES", default_value_t = 4094)]
    limit_request_line: usize,

    /// Most header fields in a request; more is answered 431.
    #[arg(long = "limit-request-fields", value_name = "INT", default_value_t = 100)]
    limit_request_fields: usize,

    /// Longest header field line in bytes; longer is answered 431.
    #[arg(long = "limit-request-field_size", value_name = "BYTES", default_value_t = 8190)]
    limit_request_field_size: usize,

    /// Largest request body in bytes, declared or chunked; larger is answered 413 (before the
    /// application runs when Content-Length declares it).
    #[arg(long = "limit-request-body", value_name = "BYTES", default_value_t = 1 << 30)]
    limit_request_body: u64,

    /// Write an access log line per request to this file (`-` for stdout). Lines are written
    /// by a thread of their own, at most 100 ms after their request ended.
    #[arg(long = "access-logfile", value_name = "FILE")]
    access_logfile: Option<String>,

    /// The access log's line, in gunicorn's syntax (default: the combined log format).
    /// Atoms: %(h)s client address (REMOTE_ADDR), %(l)s and %(u)s '-', %(t)s time,
    /// %(r)s request line, %(m)s method, %(U)s path, %(q)s query, %(H)s protocol, %(s)s status,
    /// %(B)s response bytes, %(b)s the same or '-', %(f)s referer, %(a)s user agent, %(T)s
    /// seconds, %(M)s milliseconds, %(D)s microseconds, %(L)s decimal seconds, %(p)s pid,
    /// %({name}i)s request header, %({name}o)s response header, %({NAME}e)s environ variable;
    /// %% is a literal %.
    #[arg(
        long = "access-logformat",
        value_name = "FORMAT",
        default_value = access::DEFAULT_FORMAT,
        hide_default_value = true
    )]
    access_logformat: String,

    /// Write the supervisor's process id to this file (removed at exit).
    #[arg(short = 'p', long = "pid", value_name = "FILE")]
    pid: Option<PathBuf>,

    /// Write the error log to this file (`-` for stderr).
    #[arg(long = "error-logfile", value_name = "FILE", default_value = "-")]
    error_logfile: String,

    /// The least severe error-log level written.
    #[arg(long = "log-level", value_name = "LEVEL", default_value = "info")]
    log_level: LogLevel,

    /// The path the application is mounted at behind a proxy (SCRIPT_NAME), e.g. `/app`.
    #[arg(long = "root-path", value_name = "PATH", default_value = "")]
    root_path: String,

    /// Peers whose proxy headers (--forwarded-headers) are believed, comma-separated: IP
    /// addresses, networks (10.0.0.0/8) or `*`. Peers on Unix sockets are trusted unless the
    /// list is empty (`''` trusts no one).
    #[arg(long = "forwarded-allow-ips", value_name = "IPS", default_value = "127.0.0.1,::1")]
    forwarded_allow_ips: String,

    /// The proxy headers believed from trusted peers: list only those your proxy sets or
    /// replaces, since it passes on whatever else a client sends. Choose among
    /// x-forwarded-for (REMOTE_ADDR: the last address not itself a trusted proxy),
    /// x-forwarded-proto (wsgi.url_scheme), x-forwarded-host (HTTP_HOST, SERVER_NAME/PORT),
    /// x-forwarded-port (SERVER_PORT), x-forwarded-prefix (put before SCRIPT_NAME) and
    /// forwarded (RFC 7239: its for=, proto= and host= instead of the X-Forwarded ones).
    #[arg(
        long = "forwarded-headers",
        value_name = "NAMES",
        default_value = "x-forwarded-for,x-forwarded-proto"
    )]
    forwarded_headers: String,

    /// Every connection starts with a PROXY protocol header (v1 or v2, as HAProxy's
    /// `send-proxy`/`send-proxy-v2` and nginx's `proxy_protocol on` write it), which sets
    /// REMOTE_ADDR and, for TLS the proxy terminated, wsgi.url_scheme. Connections without one are
    /// refused: use it only on listeners that only the proxy can reach.
    #[arg(long = "proxy-protocol")]
    proxy_protocol: bool,

    /// The I/O runtime: `std` (a poller thread and blocking app threads), `smol` or `tokio`
    /// (connections as async tasks on one thread; the app still runs on --threads threads).
    /// Cargo features choose which this build has; `--help` lists them.
    #[arg(long, value_name = "RUNTIME", default_value = "std")]
    runtime: Runtime,

    /// Serve HTTPS: the PEM file with the server's certificate, followed by its intermediate
    /// CA certificates if any. Every --bind listener then speaks TLS. Needs --keyfile.
    #[cfg(feature = "tls")]
    #[arg(long, value_name = "FILE")]
    certfile: Option<PathBuf>,

    /// The PEM file with the private key of --certfile's certificate (PKCS#8, PKCS#1 or SEC1).
    #[cfg(feature = "tls")]
    #[arg(long, value_name = "FILE")]
    keyfile: Option<PathBuf>,

    /// Require client certificates, verified against the CA certificates in this PEM file; a
    /// client without a valid one fails the TLS handshake. Needs --certfile and --keyfile.
    #[cfg(feature = "tls")]
    #[arg(long = "ca-certs", value_name = "FILE")]
    ca_certs: Option<PathBuf>,
}

/// The runtimes this build can serve on.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Runtime {
    /// adapter-std: std sockets and threads.
    Std,
    /// adapter-smol: smol's reactor and executor.
    #[cfg(feature = "smol")]
    Smol,
    /// adapter-tokio: a current-thread tokio runtime.
    #[cfg(feature = "tokio")]
    Tokio,
}

impl Runtime {
    fn name(self) -> &'static str {
        match self {
            Runtime::Std => "std",
            #[cfg(feature = "smol")]
            Runtime::Smol => "smol",
            #[cfg(feature = "tokio")]
            Runtime::Tokio => "tokio",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let is_worker = std::env::var_os(supervisor::WORKER_ENV).is_some();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wsgi-serve: {message}");
            // A worker that cannot set itself up would fail the same way again: the supervisor
            // stops rather than replacing it in a loop.
            if is_worker { ExitCode::from(supervisor::BOOT_ERROR as u8) } else { ExitCode::FAILURE }
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    // Parsed before anything starts, so a typo is reported once, by the supervisor.
    let access_format = AccessFormat::parse(&cli.access_logformat)?;
    let log = Arc::new(
        LineLog::open(&cli.error_logfile, cli.log_level)
            .map_err(|e| format!("cannot open the error log {:?}: {e}", cli.error_logfile))?,
    );
    raise_open_files_limit();
    if std::env::var_os(supervisor::WORKER_ENV).is_some() {
        return worker(&cli, &log, access_format);
    }
    // Checked before anything starts, so a typo fails at once rather than in every worker.
    trusted_proxies(&cli)?;
    // The TLS files are loaded and checked here, before any worker starts, so a mistake is
    // reported once and clearly; each worker loads them again.
    #[cfg(feature = "tls")]
    let scheme = match tls_files(&cli)? {
        Some(files) => {
            files.server_config()?;
            "https://"
        }
        None => "http://",
    };
    #[cfg(not(feature = "tls"))]
    let scheme = "http://";
    let listeners = match activation::systemd_sockets()? {
        Some(listeners) => {
            log.info(&format!(
                "socket activation: serving the {} socket{} systemd passed{} instead of --bind",
                listeners.len(),
                if listeners.len() > 1 { "s" } else { "" },
                activation::systemd_names().map(|n| format!(" ({n})")).unwrap_or_default(),
            ));
            listeners
        }
        None => {
            let listeners = cli.bind.iter().map(|b| bind(b)).collect::<Result<Vec<_>, _>>()?;
            for l in &listeners {
                l.set_backlog(cli.backlog)
                    .map_err(|e| format!("cannot set the backlog of {}: {e}", l.describe()))?;
            }
            listeners
        }
    };
    // Removed when this function returns, however it returns.
    let _pid_file = cli.pid.as_deref().map(pidfile::PidFile::create).transpose()?;
    let addresses: Vec<String> = listeners
        .iter()
        .map(|l| match l {
            Listener::Unix(..) if scheme == "https://" => format!("{} (TLS)", l.describe()),
            _ => l.describe().replacen("http://", scheme, 1),
        })
        .collect();
    let workers = cli.workers.max(1);
    let threads = cli.threads.max(1);
    log.info(&format!(
        "serving {} on {} (runtime {}, {workers} worker{}, {threads} thread{} each)",
        cli.app.as_deref().unwrap_or("the built-in hello app"),
        addresses.join(", "),
        cli.runtime.name(),
        if workers > 1 { "s" } else { "" },
        if threads > 1 { "s" } else { "" },
    ));
    let sockets = listeners
        .into_iter()
        .map(|l| match l {
            Listener::Tcp(l) => l.into(),
            Listener::Unix(l, _) => l.into(),
        })
        .collect();
    let timeout = (cli.timeout > 0).then(|| Duration::from_secs(cli.timeout));
    supervisor::supervise(
        workers,
        sockets,
        Duration::from_secs(cli.graceful_timeout),
        timeout,
        &log,
    )
}

/// A worker process: takes the sockets its supervisor mapped in, loads the application and
/// serves until SIGTERM or SIGINT.
fn worker(cli: &Cli, log: &Arc<LineLog>, access_format: AccessFormat) -> Result<(), String> {
    let listeners = activation::worker_sockets()?;
    // Beating before the application loads: loading does not count against --timeout.
    let board = match watchdog::worker_heartbeat()? {
        Some(file) => {
            let board = Arc::new(watchdog::Board::default());
            watchdog::start_heartbeat(board.clone(), file, Duration::from_secs(cli.timeout))?;
            Some(board)
        }
        None => None,
    };
    // The log files and the TLS files are opened before --chdir, so relative paths name files
    // in the directory wsgi-serve was started in (where the supervisor checked them).
    #[cfg(feature = "tls")]
    let tls_config = tls_files(cli)?.map(|files| files.server_config()).transpose()?;
    let keep_response_head = access_format.uses_response_headers();
    let (access_writer, access_log) = match &cli.access_logfile {
        Some(target) => {
            let (writer, sender) = AccessWriter::start(target, access_format, log.clone())
                .map_err(|e| format!("cannot open the access log {target:?}: {e}"))?;
            (Some(writer), Some(sender))
        }
        None => (None, None),
    };
    if let Some(dir) = &cli.chdir {
        std::env::set_current_dir(dir)
            .map_err(|e| format!("cannot change to {}: {e}", dir.display()))?;
    }
    let options = PyOptions {
        multithread: cli.threads > 1,
        multiprocess: cli.workers > 1,
        server_software: concat!("wsgi-serve/", env!("CARGO_PKG_VERSION")).to_owned(),
        log: log.clone(),
    };
    let loaded = match &cli.app {
        Some(target) => {
            let mut spec = AppSpec::new(target);
            for dir in &cli.pythonpath {
                spec = spec.with_python_path(dir);
            }
            PyApplication::load(&spec, options).map_err(|e| e.to_string())
        }
        None => hello_app(options),
    };
    let app = match loaded {
        Ok(app) => watchdog::Watched::new(app, board),
        Err(message) => {
            eprintln!("wsgi-serve: {message}");
            std::process::exit(supervisor::BOOT_ERROR);
        }
    };

    let mut core = Config::default();
    core.max_request_line =
        if cli.limit_request_line == 0 { 65536 } else { cli.limit_request_line };
    core.max_header_count = cli.limit_request_fields;
    core.max_field_size = cli.limit_request_field_size;
    core.max_body_size = cli.limit_request_body;
    core.keep_alive_timeout = Duration::from_secs(cli.keep_alive);
    core.head_timeout = Duration::from_secs(cli.header_timeout.max(1));
    core.proxy_protocol = cli.proxy_protocol;
    core.set_server_header(Some(concat!("wsgi-serve/", env!("CARGO_PKG_VERSION"))))
        .map_err(|e| e.to_string())?;
    let mut config = ServerConfig::default();
    config.threads = cli.threads.max(1);
    config.core = core;
    config.root_path = cli.root_path.clone();
    config.trusted_proxies = Some(Arc::new(trusted_proxies(cli)?));
    // --timeout 0 turns the watchdog off, not the I/O timeout down: then a day.
    config.io_timeout = Duration::from_secs(if cli.timeout == 0 { 86_400 } else { cli.timeout });
    config.graceful_timeout = Duration::from_secs(cli.graceful_timeout);
    let limit = request_limit(cli.max_requests, cli.max_requests_jitter);
    if access_log.is_some() || limit.is_some() {
        let served = std::sync::atomic::AtomicU64::new(0);
        let log = log.clone();
        let sink = AccessLog::new(move |record| {
            if let Some(sender) = &access_log {
                sender.send(record);
            }
            let count = served.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if limit == Some(count) {
                // The same graceful stop as SIGTERM; the supervisor then starts a fresh worker.
                log.info(&format!("served {count} requests (--max-requests): restarting"));
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::TERM,
                );
            }
        });
        config.access_log = Some(if keep_response_head { sink.with_response_head() } else { sink });
    }

    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| format!("cannot handle signals: {e}"))?;

    // With TLS, the front takes the --bind listeners and the server serves its internal socket.
    #[cfg(feature = "tls")]
    let (front, listeners) = match tls_config {
        Some(tls_config) => {
            let front_config = tls::FrontConfig {
                tls: tls_config,
                handshake_timeout: config.core.head_timeout,
                io_timeout: config.io_timeout,
                graceful_timeout: config.graceful_timeout,
            };
            let (front, inner) = tls::Front::start(listeners, front_config, log.clone())?;
            inner
                .set_backlog(cli.backlog)
                .map_err(|e| format!("cannot set the backlog of {}: {e}", inner.describe()))?;
            // The front announces each client (address, TLS) with a PROXY v2 header.
            config.core.proxy_protocol = true;
            (Some(front), vec![inner])
        }
        None => (None, listeners),
    };
    #[cfg(feature = "tls")]
    let before_stop: StopHook = match &front {
        Some(front) => Box::new(front.stopper()),
        None => Box::new(|| ()),
    };
    #[cfg(not(feature = "tls"))]
    let before_stop: StopHook = Box::new(|| ());

    let served = match cli.runtime {
        Runtime::Std => serve_std(app, listeners, config, signals, before_stop),
        #[cfg(feature = "smol")]
        Runtime::Smol => serve_smol(app, listeners, config, signals, before_stop),
        #[cfg(feature = "tokio")]
        Runtime::Tokio => serve_tokio(app, listeners, config, signals, before_stop),
    };
    #[cfg(feature = "tls")]
    if let Some(front) = front {
        front.finish();
    }
    // The lines of the last requests.
    if let Some(writer) = access_writer {
        writer.finish();
    }
    served
}

/// The TLS options, checked for consistency (`None`: plain HTTP).
#[cfg(feature = "tls")]
fn tls_files(cli: &Cli) -> Result<Option<tls::TlsFiles>, String> {
    let files = tls::TlsFiles::from_options(
        cli.certfile.as_deref(),
        cli.keyfile.as_deref(),
        cli.ca_certs.as_deref(),
    )?;
    if files.is_some() && cli.proxy_protocol {
        return Err("--proxy-protocol with --certfile: wsgi-serve cannot read a PROXY header \
                    before the TLS handshake; let the proxy in front terminate TLS (and drop \
                    --certfile/--keyfile), or drop --proxy-protocol"
            .to_owned());
    }
    Ok(files)
}

type Signals = signal_hook::iterator::Signals;

/// Runs first when SIGTERM or SIGINT arrives, before the server starts its graceful stop (the
/// TLS front stops accepting there).
type StopHook = Box<dyn FnOnce() + Send>;

fn serve_std(
    app: impl Application,
    listeners: Vec<Listener>,
    config: ServerConfig,
    mut signals: Signals,
    before_stop: StopHook,
) -> Result<(), String> {
    let grace = config.graceful_timeout;
    let server = adapter_std::start(app, listeners, config).map_err(|e| e.to_string())?;
    let _ = signals.forever().next();
    before_stop();
    server.handle().shutdown();
    server.join(grace);
    Ok(())
}

/// Stops an async server when SIGTERM or SIGINT arrives, from a thread of its own.
fn on_signal(mut signals: Signals, stop: impl FnOnce() + Send + 'static) -> Result<(), String> {
    std::thread::Builder::new()
        .name("wsgi-signals".to_owned())
        .spawn(move || {
            let _ = signals.forever().next();
            stop();
        })
        .map(drop)
        .map_err(|e| format!("cannot handle signals: {e}"))
}

/// The std listening sockets behind `listeners`. A worker's Unix socket paths stay where they
/// are: the supervisor owns them.
fn into_std(listeners: Vec<Listener>) -> Vec<StdListener> {
    listeners
        .into_iter()
        .map(|l| match l {
            Listener::Tcp(l) => StdListener::Tcp(l),
            Listener::Unix(l, _) => StdListener::Unix(l),
        })
        .collect()
}

enum StdListener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

#[cfg(feature = "smol")]
fn serve_smol(
    app: impl Application,
    listeners: Vec<Listener>,
    config: ServerConfig,
    signals: Signals,
    before_stop: StopHook,
) -> Result<(), String> {
    let listeners = into_std(listeners)
        .into_iter()
        .map(|l| match l {
            StdListener::Tcp(l) => adapter_smol::Listener::from_std_tcp(l),
            StdListener::Unix(l) => adapter_smol::Listener::from_std_unix(l, None),
        })
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| e.to_string())?;
    let executor = Arc::new(async_executor::Executor::new());
    let server =
        adapter_smol::Server::new(executor.clone(), app, config).map_err(|e| e.to_string())?;
    let handle = server.handle();
    on_signal(signals, move || {
        before_stop();
        handle.shutdown();
    })?;
    async_io::block_on(executor.run(server.serve(listeners)));
    Ok(())
}

#[cfg(feature = "tokio")]
fn serve_tokio(
    app: impl Application,
    listeners: Vec<Listener>,
    config: ServerConfig,
    signals: Signals,
    before_stop: StopHook,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;
    runtime.block_on(async {
        let listeners = into_std(listeners)
            .into_iter()
            .map(|l| match l {
                StdListener::Tcp(l) => adapter_tokio::Listener::from_std_tcp(l),
                StdListener::Unix(l) => adapter_tokio::Listener::from_std_unix(l, None),
            })
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| e.to_string())?;
        let server = adapter_tokio::Server::new(app, config).map_err(|e| e.to_string())?;
        let handle = server.handle();
        on_signal(signals, move || {
            before_stop();
            handle.shutdown();
        })?;
        server.serve(listeners).await;
        Ok(())
    })
}

/// The trusted proxies and the headers believed from them.
fn trusted_proxies(cli: &Cli) -> Result<TrustedProxies, String> {
    let trusted = TrustedProxies::parse(&cli.forwarded_allow_ips)
        .map_err(|e| format!("--forwarded-allow-ips: {e}"))?;
    let headers = TrustedProxies::parse_headers(&cli.forwarded_headers)
        .map_err(|e| format!("--forwarded-headers: {e}"))?;
    Ok(trusted.believe(&headers))
}

/// This worker's request limit: `max` plus a random share of `jitter`; `None` when `max` is 0.
fn request_limit(max: u64, jitter: u64) -> Option<u64> {
    use std::hash::{BuildHasher, Hasher};
    if max == 0 {
        return None;
    }
    // std's randomly seeded hasher: a different draw in each worker, without a random crate.
    let draw = std::collections::hash_map::RandomState::new().build_hasher().finish();
    Some(max.saturating_add(draw % jitter.saturating_add(1)))
}

/// Raises the soft limit on open files to the hard limit, as servers do: each connection is a
/// descriptor, and the usual soft limit of 1024 would cap a worker at about a thousand clients.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// Parses and binds one `--bind` value.
fn bind(spec: &str) -> Result<Listener, String> {
    if let Some(path) = spec.strip_prefix("unix:") {
        return Listener::bind_unix(path).map_err(|e| format!("cannot bind {spec}: {e}"));
    }
    // gunicorn accepts a bare host and a bare port too.
    let with_port = if spec.parse::<u16>().is_ok() {
        format!("127.0.0.1:{spec}")
    } else if !spec.contains(':') || (spec.starts_with('[') && spec.ends_with(']')) {
        format!("{spec}:8000")
    } else {
        spec.to_owned()
    };
    let addrs: Vec<_> = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve --bind {spec:?}: {e}"))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match Listener::bind_tcp(addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(format!("cannot bind {addr}: {e}")),
        }
    }
    Err(last.unwrap_or_else(|| format!("--bind {spec:?} names no address")))
}

fn hello_app(options: PyOptions) -> Result<PyApplication, String> {
    Python::initialize();
    Python::attach(|py| {
        let module = PyModule::from_code(py, HELLO_APP, c"hello.py", c"wsgi_serve_hello")?;
        let app = module.getattr("application")?;
        PyApplication::new(py, app, "hello:application", options)
    })
    .map_err(|e| format!("cannot create the hello app: {e}"))
}

#[cfg(test)]
mod tests {
    use super::request_limit;

    #[test]
    fn request_limit_adds_a_jitter_within_its_bound() {
        assert_eq!(request_limit(0, 50), None);
        assert_eq!(request_limit(100, 0), Some(100));
        let draws: Vec<u64> = (0..200).filter_map(|_| request_limit(100, 5)).collect();
        assert_eq!(draws.len(), 200);
        assert!(draws.iter().all(|d| (100..=105).contains(d)), "{draws:?}");
        // Random: not all the same over 200 draws.
        assert!(draws.iter().any(|d| *d != draws[0]), "{draws:?}");
    }
}
