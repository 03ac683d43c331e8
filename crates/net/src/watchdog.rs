//! A connection whose reads and writes give up once they have waited a while with no
//! byte moving: the response timeout is a gap, not a deadline for a whole answer, so a
//! 500 MB message arriving slowly but steadily is read to the end, while a server that
//! falls silent (or stops reading what is sent to it) is given up within the gap.
//!
//! The clock of a direction runs only while that direction waits: it starts at a read
//! (or write) that finds nothing to do and stops at the next one that moves bytes. Put
//! the watchdog where the client's own reads and writes arrive (above TLS and
//! compression): there, a waiting read is the client waiting for the server.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `inner`, with at most `gap` of waiting in each direction between two moves of bytes.
pub struct Watchdog<S> {
    inner: S,
    gap: Duration,
    reading: Option<Pin<Box<Sleep>>>,
    writing: Option<Pin<Box<Sleep>>>,
}

impl<S> Watchdog<S> {
    pub fn new(inner: S, gap: Duration) -> Watchdog<S> {
        Watchdog {
            inner,
            gap,
            reading: None,
            writing: None,
        }
    }

    /// The connection without its watchdog (to put TLS or compression under a new one).
    pub fn into_inner(self) -> S {
        self.inner
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

/// Whether the error is a watchdog's: nothing moved for the whole gap.
pub fn is_silence(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::TimedOut
        && error.get_ref().is_some_and(|inner| inner.is::<Silence>())
}

/// The error of a direction that waited the whole gap.
#[derive(Debug, thiserror::Error)]
#[error("nothing {direction} for {seconds} s")]
struct Silence {
    direction: &'static str,
    seconds: u64,
}

/// What a poll of one direction gives, with its clock: stopped when the poll moved
/// bytes (or failed), started or checked while it waits.
fn watched<T>(
    polled: Poll<io::Result<T>>,
    clock: &mut Option<Pin<Box<Sleep>>>,
    gap: Duration,
    direction: &'static str,
    cx: &mut Context<'_>,
) -> Poll<io::Result<T>> {
    if polled.is_ready() {
        *clock = None;
        return polled;
    }
    let sleep = clock.get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
    match sleep.as_mut().poll(cx) {
        Poll::Ready(()) => {
            *clock = None;
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                Silence {
                    direction,
                    seconds: gap.as_secs(),
                },
            )))
        }
        Poll::Pending => Poll::Pending,
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watchdog<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        watched(polled, &mut this.reading, this.gap, "arrived", cx)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watchdog<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        watched(polled, &mut this.writing, this.gap, "was taken", cx)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        watched(polled, &mut this.writing, this.gap, "was taken", cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        watched(polled, &mut this.writing, this.gap, "was taken", cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const GAP: Duration = Duration::from_secs(10);

    // The clock is tokio's paused one: it moves only when every task waits, straight
    // to the next timer, so these run at once and the same way every time.

    #[tokio::test(start_paused = true)]
    async fn a_slow_steady_stream_is_read_to_the_end() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut watched = Watchdog::new(client, GAP);
        let sender = tokio::spawn(async move {
            // 20 bytes, one every 9 s: 180 s in all, far beyond one gap.
            for byte in 0..20u8 {
                tokio::time::sleep(Duration::from_secs(9)).await;
                server.write_all(&[byte]).await.unwrap();
            }
        });
        let mut received = Vec::new();
        while received.len() < 20 {
            let mut byte = [0u8; 1];
            watched.read_exact(&mut byte).await.unwrap();
            received.push(byte[0]);
        }
        assert_eq!(received, (0..20).collect::<Vec<u8>>());
        sender.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_server_is_given_up_after_the_gap() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut watched = Watchdog::new(client, GAP);
        server.write_all(b"some").await.unwrap();
        let mut four = [0u8; 4];
        watched.read_exact(&mut four).await.unwrap();
        let started = tokio::time::Instant::now();
        let error = watched.read(&mut four).await.unwrap_err();
        assert!(is_silence(&error), "{error}");
        assert_eq!(error.to_string(), "nothing arrived for 10 s");
        assert_eq!(started.elapsed(), GAP);
        drop(server);
    }

    #[tokio::test(start_paused = true)]
    async fn time_spent_not_reading_does_not_count() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut watched = Watchdog::new(client, GAP);
        // The client is busy elsewhere for far longer than the gap, then asks; the
        // answer comes 5 s after the question.
        tokio::time::sleep(GAP * 5).await;
        let answer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            server.write_all(b"ok").await.unwrap();
            server
        });
        let mut two = [0u8; 2];
        watched.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"ok");
        drop(answer.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_stops_reading_is_given_up_after_the_gap() {
        let (client, _server) = tokio::io::duplex(64);
        let mut watched = Watchdog::new(client, GAP);
        let error = watched.write_all(&[0u8; 1024]).await.unwrap_err();
        assert!(is_silence(&error), "{error}");
        assert_eq!(error.to_string(), "nothing was taken for 10 s");
    }
}
