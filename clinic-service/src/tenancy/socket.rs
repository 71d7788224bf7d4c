//! Opening PostgreSQL connections whose driver task ends only once the server has closed the
//! socket. tokio-postgres sends `Terminate` and closes its side without waiting; the server
//! process may still be listed in `pg_stat_activity` for a moment. A budget permit released at
//! that point would let a new connection overlap the old one, so PostgreSQL could briefly see
//! one connection more than the budget. Waiting for the server's end-of-stream (the backend
//! has exited by then) closes that gap.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use clinic_shared::pg::PgTls;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_postgres::{Client, Config, config::Host, tls::MakeTlsConnect};

use crate::error::Error;

/// A stream whose shutdown completes when the peer has closed its side too.
pub struct CloseAware<S> {
    inner: S,
    write_closed: bool,
}

impl<S: AsyncRead + Unpin> AsyncRead for CloseAware<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for CloseAware<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.write_closed {
            match Pin::new(&mut self.inner).poll_shutdown(cx) {
                Poll::Ready(Ok(())) => self.write_closed = true,
                // Already gone: nothing to wait for.
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        // Drain until the server closes (its process has exited by then).
        let mut scratch = [0u8; 512];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The stream of a tenant connection: TLS where the server's URL asks for it.
type TlsStream = <PgTls as MakeTlsConnect<CloseAware<TcpStream>>>::Stream;

/// Connects to the first TCP host of `config` (TLS, verified, where its `sslmode` asks for it)
/// and returns the client and its driver future.
pub async fn connect(
    config: &Config,
    tls: &PgTls,
    timeout: Duration,
) -> Result<(Client, tokio_postgres::Connection<CloseAware<TcpStream>, TlsStream>), Error> {
    let unavailable = |cause: String| Error::Unavailable {
        what: "tenant database",
        cause: format!("connect: {cause}"),
    };
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        _ => return Err(unavailable("only TCP hosts are supported".into())),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let stream = tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| unavailable("timed out".into()))?
        .map_err(|e| unavailable(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let stream = CloseAware { inner: stream, write_closed: false };
    let config = tls.apply(config).map_err(|e| unavailable(e.to_string()))?;
    tokio::time::timeout(timeout, config.connect_raw(stream, tls.tls_connect(&host)))
        .await
        .map_err(|_| unavailable("timed out".into()))?
        .map_err(|e| unavailable(e.to_string()))
}
