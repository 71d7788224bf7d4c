//! Accepted TLS connections as a stream for tonic's `serve_with_incoming_shutdown`.
//!
//! Each handshake runs in its own task, bounded in time, so a client that connects and then
//! stalls (or trickles bytes) delays nobody else. Failed handshakes are logged at debug level
//! and dropped: they are the client's problem, and often scanners. Dropping the stream (tonic
//! does when shutdown begins) closes the listening socket and aborts handshakes in flight.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use rustls::ServerConfig;
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinSet,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::Stream;
use tonic::transport::server::TcpIncoming;

/// The longest a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in flight at most; past it, accepting waits until one finishes, so a flood of
/// stalled connections costs bounded memory (the kernel's backlog holds the rest).
const MAX_HANDSHAKES: usize = 1024;

/// A stream of TLS connections accepted on a TCP listener, ready for
/// `Router::serve_with_incoming_shutdown`. Its items are `tokio_rustls` server streams, for
/// which tonic provides `Request::remote_addr` and `Request::peer_certs`.
pub struct TlsIncoming {
    /// `None` once the listener has ended.
    tcp: Option<TcpIncoming>,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<TlsStream<TcpStream>>>,
}

impl TlsIncoming {
    /// Accepts on `listener` (TCP_NODELAY and keepalive set as for plaintext, see
    /// [`crate::server::tcp_incoming`]) and handshakes with `config`.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> Self {
        Self {
            tcp: Some(crate::server::tcp_incoming(listener)),
            acceptor: TlsAcceptor::from(config),
            handshakes: JoinSet::new(),
        }
    }
}

impl Stream for TlsIncoming {
    type Item = std::io::Result<TlsStream<TcpStream>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            // Start a handshake for every connection waiting, while there is room. Returning
            // Pending below is only right once the listener has been polled to Pending (so it
            // will wake us) or handshakes are in flight (so the join set will).
            while this.handshakes.len() < MAX_HANDSHAKES {
                let Some(tcp) = this.tcp.as_mut() else { break };
                match Pin::new(tcp).poll_next(cx) {
                    Poll::Ready(Some(Ok(stream))) => {
                        this.handshakes.spawn(handshake(this.acceptor.clone(), stream));
                    }
                    // Accept errors (such as too many open files) go to tonic, as for plaintext.
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                    Poll::Ready(None) => this.tcp = None,
                    Poll::Pending => break,
                }
            }
            match this.handshakes.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(stream)))) => return Poll::Ready(Some(Ok(stream))),
                // Failed (logged) or aborted: a slot is free, so accept again.
                Poll::Ready(Some(_)) => continue,
                Poll::Ready(None) if this.tcp.is_none() => return Poll::Ready(None),
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

async fn handshake(acceptor: TlsAcceptor, stream: TcpStream) -> Option<TlsStream<TcpStream>> {
    let peer = stream.peer_addr().ok();
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(?peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(?peer, "TLS handshake timed out");
            None
        }
    }
}
