//! Listening sockets passed in rather than bound: systemd socket activation for the
//! supervisor, and the supervisor's own sockets for a worker. Both use the `LISTEN_FDS`
//! protocol (descriptors 3, 4, …); a worker is told apart by [`WORKER_ENV`](crate::supervisor::WORKER_ENV).

use std::path::PathBuf;

use adapter_std::Listener;

/// The sockets systemd passed to this process, if it was socket-activated: `LISTEN_PID` is
/// this process and `LISTEN_FDS` counts the sockets. The variables are then removed from the
/// environment, as `sd_listen_fds(1)` does, so no child mistakes them for its own.
pub(crate) fn systemd_sockets() -> Result<Option<Vec<Listener>>, String> {
    let pid = std::process::id().to_string();
    if std::env::var("LISTEN_PID").ok().as_deref() != Some(pid.as_str())
        || std::env::var_os("LISTEN_FDS").is_none()
    {
        return Ok(None);
    }
    let listeners = take(listenfd::ListenFd::from_env(), "systemd passed (LISTEN_FDS)")?;
    if listeners.is_empty() {
        return Err("socket activation: LISTEN_FDS names no socket; check the .socket unit's \
                    Listen*= lines"
            .to_owned());
    }
    Ok(Some(listeners))
}

/// The names systemd gave the sockets (`LISTEN_FDNAMES`, from the units' FileDescriptorName=),
/// for the log.
pub(crate) fn systemd_names() -> Option<String> {
    std::env::var("LISTEN_FDNAMES").ok().filter(|n| !n.is_empty()).map(|n| n.replace(':', ", "))
}

/// The sockets the supervisor mapped into this worker, in its order.
pub(crate) fn worker_sockets() -> Result<Vec<Listener>, String> {
    let listeners = take(listenfd::ListenFd::from_env(), "the supervisor passed")?;
    if listeners.is_empty() {
        return Err("no listening sockets were passed to this worker".to_owned());
    }
    Ok(listeners)
}

fn take(mut fds: listenfd::ListenFd, whose: &str) -> Result<Vec<Listener>, String> {
    let mut listeners = Vec::with_capacity(fds.len());
    for i in 0..fds.len() {
        let listener = match fds.take_tcp_listener(i) {
            Ok(Some(l)) => Listener::Tcp(l),
            _ => match fds.take_unix_listener(i) {
                Ok(Some(l)) => {
                    let path = l
                        .local_addr()
                        .ok()
                        .and_then(|a| a.as_pathname().map(PathBuf::from))
                        .unwrap_or_default();
                    Listener::Unix(l, path)
                }
                _ => {
                    return Err(format!(
                        "descriptor {} that {whose} is not a listening TCP or Unix stream socket",
                        i + 3
                    ));
                }
            },
        };
        listeners.push(listener);
    }
    Ok(listeners)
}
