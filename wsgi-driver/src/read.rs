//! Reading a socket into a [`Connection`]: into this thread's buffer, which a large read hands
//! to the connection as it is (no copy), and a small one copies from.

use std::cell::RefCell;
use std::os::fd::AsFd;
use std::time::Instant;

use rustix::buffer::spare_capacity;
use rustix::io::Errno;
use rustix::net::RecvFlags;
use wsgi_core::Connection;

/// Room for one read: a 64 KiB request body arrives in one read with its head (in the Python
/// bridge, one piece, which `wsgi.input.read()` copies once into its `bytes`).
pub const READ_CHUNK: usize = 80 * 1024;

/// A read of at least this many bytes is given to the connection in the buffer it was read
/// into ([`Connection::handle_input_vec`]), and the thread makes a new buffer for its next
/// read: cheaper than copying that many bytes. A shorter read (a request head) is copied and
/// the buffer kept.
pub const HAND_OVER: usize = 16 * 1024;

/// Runs `f` with this thread's read buffer: empty, with room for at least [`READ_CHUNK`] bytes,
/// which a read fills without zeroing them first (`rustix::buffer::spare_capacity`). `f` may
/// take the buffer (see [`hand_over`]); what it leaves is cleared and kept for the next read.
pub fn with_read_vec<T>(f: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    thread_local! {
        static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    BUF.with(|cell| {
        let mut fresh = Vec::new();
        let mut held = cell.try_borrow_mut();
        // Re-entered (the drivers never nest reads): a buffer of its own.
        let buf = match &mut held {
            Ok(held) => &mut **held,
            Err(_) => &mut fresh,
        };
        buf.clear();
        buf.reserve_exact(READ_CHUNK);
        let result = f(buf);
        buf.clear();
        result
    })
}

/// Gives `conn` the bytes read into `buf` at `now`: [`HAND_OVER`] bytes or more in `buf`
/// itself (taken, leaving it empty and without room), fewer as a copy.
pub fn hand_over(conn: &mut Connection, buf: &mut Vec<u8>, now: Instant) {
    if buf.len() >= HAND_OVER {
        conn.handle_input_vec(std::mem::take(buf), now);
    } else {
        conn.handle_input(buf, now);
    }
}

/// The bytes read into `buf` as a `Vec` of their own, for another thread to [`hand_over`]: by
/// the same rule, `buf` itself (taken) when they are many, a copy when few.
pub fn detach(buf: &mut Vec<u8>) -> Vec<u8> {
    if buf.len() >= HAND_OVER { std::mem::take(buf) } else { buf.clone() }
}

/// One `recv` from `socket` into `buf`'s spare room (it grows by what arrived; `flags` as for
/// [`recv_into`]); interrupted calls are retried. Returns the number of bytes, 0 at the end of
/// the stream.
pub(crate) fn recv_spare(
    socket: impl AsFd,
    buf: &mut Vec<u8>,
    flags: RecvFlags,
) -> Result<usize, Errno> {
    loop {
        match rustix::net::recv(&socket, spare_capacity(buf), flags) {
            Ok((n, _)) => return Ok(n),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Receives once from `socket` into this thread's read buffer and gives what arrived to `conn`
/// ([`hand_over`]); `flags` is [`RecvFlags::DONTWAIT`] for a look that does not wait, or empty
/// to wait as the socket does. Interrupted calls are retried. Returns the number of bytes: 0 at
/// the end of the stream, which `conn` is told.
///
/// # Errors
///
/// The socket's error (`EAGAIN` when nothing is there without waiting, or the socket's
/// timeout passed).
pub fn recv_into(
    socket: impl AsFd,
    conn: &mut Connection,
    flags: RecvFlags,
) -> Result<usize, Errno> {
    with_read_vec(|buf| {
        let n = recv_spare(&socket, buf, flags)?;
        let now = Instant::now();
        if n == 0 {
            conn.handle_eof(now);
        } else {
            hand_over(conn, buf, now);
        }
        Ok(n)
    })
}

/// After a read of `n` bytes was given to `conn`: if it filled [`READ_CHUNK`], the socket may
/// hold more, and [`read_available`] takes it for as long as the connection wants input (a
/// connection stops wanting it once it buffers 64 KiB it has not reported, so after a full read
/// into an empty buffer the rest waits for the next read). A shorter read took all the socket
/// held: reading on would only return `EAGAIN`, a system call per request.
pub fn read_rest(socket: impl AsFd, conn: &mut Connection, n: usize) {
    if n >= READ_CHUNK {
        read_available(socket, conn);
    }
}

/// Feeds `conn` what `socket` already holds, without blocking, for as long as the connection
/// wants input, stopping after a read shorter than [`READ_CHUNK`] (it took all there was). A
/// driver calls it to look for the next request on a connection it takes up again, and
/// through [`read_rest`] after a read that filled its buffer.
///
/// The reads are opportunistic: a socket error ends them like the end of the stream, so bytes
/// already received (a complete body from a client that then reset the connection) are still
/// delivered, and a body left incomplete fails as such. Returns whether any bytes arrived.
pub fn read_available(socket: impl AsFd, conn: &mut Connection) -> bool {
    let mut received = false;
    while conn.wants_read() {
        match recv_into(&socket, conn, RecvFlags::DONTWAIT) {
            Ok(0) | Err(Errno::AGAIN) => break,
            Ok(n) => {
                received = true;
                if n < READ_CHUNK {
                    break;
                }
            }
            Err(_) => {
                conn.handle_eof(Instant::now());
                break;
            }
        }
    }
    received
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::io::Write;
    use std::os::unix::net::UnixStream;

    use wsgi_core::{Config, Event};

    use super::*;

    /// Reads all of `sent` from a socket into a fresh connection and returns its events' body
    /// pieces (after the head).
    fn pieces_of(sent: &[u8], body_len: usize) -> Vec<bytes::Bytes> {
        let (mut client, server) = UnixStream::pair().unwrap();
        client.write_all(sent).unwrap();
        let mut conn = Connection::new(Config::default(), Instant::now());
        assert!(read_available(&server, &mut conn));
        assert!(matches!(conn.poll_event(), Ok(Some(Event::Request(_)))));
        let mut pieces = Vec::new();
        let mut got = 0;
        while got < body_len {
            match conn.poll_event().unwrap() {
                Some(Event::Body(piece)) => {
                    got += piece.len();
                    pieces.push(piece);
                }
                None => assert!(recv_into(&server, &mut conn, RecvFlags::empty()).unwrap() > 0),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(conn.poll_event(), Ok(Some(Event::EndOfBody))));
        pieces
    }

    fn post(body_len: usize) -> Vec<u8> {
        let mut sent = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {body_len}\r\n\r\n")
            .into_bytes();
        sent.extend((0..body_len).map(|i| (i % 251) as u8));
        sent
    }

    /// A 64 KiB body sent with its head arrives in one read and one piece, in the buffer it was
    /// read into; a small one is copied and the thread keeps its buffer.
    #[test]
    fn large_reads_are_handed_over_and_small_ones_copied() {
        let sent = post(64 * 1024);
        let read_into = with_read_vec(|b| b.as_ptr() as usize);
        let pieces = pieces_of(&sent, 64 * 1024);
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0][..], sent[sent.len() - 64 * 1024..]);
        let at = pieces[0].as_ptr() as usize - read_into;
        assert_eq!(at, sent.len() - 64 * 1024, "the piece is where it was read, not a copy");
        let kept = with_read_vec(|b| b.as_ptr() as usize);
        let small = post(100);
        let pieces = pieces_of(&small, 100);
        assert_eq!(pieces.concat(), small[small.len() - 100..]);
        assert_eq!(with_read_vec(|b| b.as_ptr() as usize), kept, "a small read keeps the buffer");
    }

    /// A body larger than a read arrives whole and in order, whatever was handed over.
    #[test]
    fn a_body_past_one_read_arrives_whole() {
        let len = 3 * READ_CHUNK + 17;
        let sent = post(len);
        let (mut client, server) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || client.write_all(&sent).map(|()| sent));
        let mut conn = Connection::new(Config::default(), Instant::now());
        let mut body = Vec::new();
        loop {
            match conn.poll_event().unwrap() {
                Some(Event::Request(_)) => {}
                Some(Event::Body(piece)) => body.extend_from_slice(&piece),
                Some(Event::EndOfBody) => break,
                None => {
                    let n = recv_into(&server, &mut conn, RecvFlags::empty()).unwrap();
                    assert!(n > 0);
                    read_rest(&server, &mut conn, n);
                }
                Some(other) => panic!("{other:?}"),
            }
        }
        let sent = writer.join().unwrap().unwrap();
        assert_eq!(body, sent[sent.len() - len..]);
    }

    #[test]
    fn the_buffer_survives_reentry() {
        let nested = with_read_vec(|outer| {
            outer.push(7);
            with_read_vec(|inner| (inner.len(), inner.capacity() >= READ_CHUNK))
        });
        assert_eq!(nested, (0, true));
        assert_eq!(with_read_vec(|b| b.len()), 0);
    }
}
