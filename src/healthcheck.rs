//! `writer-sync healthcheck`: one `GET /healthz` to a running daemon, for
//! a container `HEALTHCHECK` (the image has no curl).
//!
//! Invariant: reads no config and no secret, makes one loopback-or-given
//! request with a deadline, and never logs: the answer is the exit code
//! (0 when the daemon answered 200) and one line on stderr otherwise.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};

/// Asks `addr` for `/healthz`; `Ok` when it answered 200 within `timeout`.
pub fn check(addr: &str, timeout: Duration) -> anyhow::Result<()> {
    let target = addr
        .to_socket_addrs()
        .with_context(|| format!("bad address {addr:?} (want HOST:PORT)"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))?;
    let mut conn = TcpStream::connect_timeout(&target, timeout)
        .with_context(|| format!("cannot connect to {target}"))?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    let request = format!("GET /healthz HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes())
        .with_context(|| format!("cannot send to {target}"))?;
    // The status line is all we need; a bounded read, whatever answers.
    let mut head = Vec::new();
    conn.take(4096)
        .read_to_end(&mut head)
        .with_context(|| format!("no answer from {target}"))?;
    let head = String::from_utf8_lossy(&head);
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or("");
    if status != "200" {
        bail!(
            "{target}/healthz answered {:?}",
            head.lines().next().unwrap_or("nothing")
        );
    }
    Ok(())
}
