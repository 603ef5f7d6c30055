//! The load generator's HTTP/2 client: frames written and read by the generator
//! itself (`frame`), response headers decoded by its own HPACK decoder (`hpack`).
//!
//! Why not the `h2` crate: the generator must cost no more per request than h2load,
//! or on 2 shared cores it takes CPU from the server it measures. `h2` spent about
//! 20,000 user-space instructions per request here against h2load's 9,000
//! (results/load-instructions.md): a mutex-guarded stream store, an `http::Request`
//! and a header map each way, frames moved through several queues. This client keeps
//! a connection's state in one `RefCell` shared by the connection's task and its
//! streams' workers (all on one load thread), encodes each request's header block
//! once (`--url`) or into a reused buffer, and reads only what the recorder needs.
//!
//! What it implements of RFC 9113: the preface and SETTINGS exchange (push disabled,
//! 1 MiB stream windows, a 16 MiB connection window), the server's
//! MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE and MAX_FRAME_SIZE, flow control both
//! ways, padded and prioritised frames, CONTINUATION, interim 1xx responses,
//! trailers, RST_STREAM (sent with CANCEL when a request times out), PING, and
//! GOAWAY (streams above its last id fail as resets; the connection takes no more).
//! Everything else the server sends that the protocol lets a client ignore is
//! ignored; anything malformed fails the connection as a protocol error.

mod driver;
mod frame;
mod hpack;

use super::conn::Answer;
use super::h1::Io;
use super::recorder::ErrorKind;
use bytes::BytesMut;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

pub(super) use frame::{RequestHead, encode_head};

/// The window the generator gives each stream, and the whole connection.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 1 << 24;

/// A connection's I/O, to be run as a task on the load thread (see `driver`).
pub type Driver = Pin<Box<dyn Future<Output = ()>>>;

/// One stream's handle on a shared HTTP/2 connection; a worker holds one.
pub struct H2Stream {
    shared: Rc<RefCell<Shared>>,
}

/// What the connection's task and its streams share.
struct Shared {
    /// Frames queued by the streams (and by the task itself), sent by the task.
    write: Vec<u8>,
    /// Wakes the connection's task when frames are queued.
    writer: Option<Waker>,
    /// Streams awaiting their response, by stream id.
    streams: HashMap<u32, Stream>,
    next_stream: u32,
    /// The server's limit on open streams; 0 until its SETTINGS arrive.
    max_streams: usize,
    /// Workers waiting for a stream to be allowed to open.
    admission: Vec<Waker>,
    /// What the server allows us to send before it updates the window.
    send_window: i64,
    /// The server's initial stream window and largest frame.
    peer_stream_window: i64,
    peer_max_frame: usize,
    /// Set once the connection takes no new streams: it failed, closed, or the server
    /// sent GOAWAY.
    closed: Option<ErrorKind>,
}

/// One request in flight.
#[derive(Default)]
struct Stream {
    waker: Option<Waker>,
    status: Option<u16>,
    content_encoding: Option<http::HeaderValue>,
    etag: Option<http::HeaderValue>,
    body_len: u64,
    kept: Option<BytesMut>,
    /// Body bytes received since the stream's window was last updated.
    unacknowledged: u32,
    /// What we may still send on this stream (request bodies).
    send_window: i64,
    /// Set when the response ended (or the stream failed).
    outcome: Option<Result<(), ErrorKind>>,
}

impl Shared {
    fn new() -> Self {
        Self {
            write: Vec::with_capacity(16 * 1024),
            writer: None,
            streams: HashMap::new(),
            next_stream: 1,
            max_streams: 0,
            admission: Vec::new(),
            send_window: frame::DEFAULT_WINDOW,
            peer_stream_window: frame::DEFAULT_WINDOW,
            peer_max_frame: frame::MAX_FRAME,
            closed: None,
        }
    }

    fn wake_writer(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.wake();
        }
    }

    fn wake_admission(&mut self) {
        for waker in self.admission.drain(..) {
            waker.wake();
        }
    }

    /// Ends every stream `which` selects with `error`, waking its worker.
    fn fail_streams(&mut self, error: ErrorKind, which: impl Fn(u32) -> bool) {
        for (id, stream) in &mut self.streams {
            if which(*id) && stream.outcome.is_none() {
                stream.outcome = Some(Err(error));
                if let Some(waker) = stream.waker.take() {
                    waker.wake();
                }
            }
        }
    }

    /// The connection is finished: every stream fails, every waiter wakes.
    fn fail(&mut self, error: ErrorKind) {
        self.closed.get_or_insert(error);
        self.fail_streams(error, |_| true);
        self.wake_admission();
    }
}

/// Starts HTTP/2 on `io`: sends the preface and settings, and waits for the server's
/// SETTINGS, so a server that does not speak HTTP/2 fails here rather than per
/// request. Returns the first stream's handle and the connection's task.
pub async fn handshake(io: Box<dyn Io>) -> Result<(H2Stream, Driver), String> {
    let shared = Rc::new(RefCell::new(Shared::new()));
    let mut driver = driver::Connection::new(io, shared.clone());
    driver.settle().await?;
    Ok((H2Stream { shared }, Box::pin(driver.run())))
}

impl H2Stream {
    /// Another stream on the same connection.
    pub fn another_stream(&self) -> H2Stream {
        H2Stream { shared: self.shared.clone() }
    }

    /// The connection takes no new streams (failed, closed, or GOAWAY).
    pub fn is_closed(&self) -> bool {
        self.shared.borrow().closed.is_some()
    }

    /// Sends a request (its HPACK `head` and optional `body`) and reads the whole
    /// response. Dropping the future part-way (a timeout) resets the stream.
    pub async fn exchange(&self, head: &[u8], body: &[u8], keep_body: bool) -> Result<Answer, ErrorKind> {
        let id = std::future::poll_fn(|cx| self.open(cx, head, body.is_empty(), keep_body)).await?;
        let guard = StreamGuard { shared: &self.shared, id };
        let mut sent = 0;
        while sent < body.len() {
            sent += std::future::poll_fn(|cx| self.send_body(cx, id, &body[sent..])).await?;
        }
        std::future::poll_fn(|cx| self.poll_response(cx, id)).await?;
        let stream = guard.finish();
        Ok(Answer {
            // Cannot be None: a stream ends successfully only after its final HEADERS.
            status: stream.status.unwrap_or_default(),
            content_encoding: stream.content_encoding,
            etag: stream.etag,
            body_len: stream.body_len,
            body: stream.kept.map(BytesMut::freeze),
        })
    }

    /// Opens a stream when the server's limit allows: queues its HEADERS.
    fn open(
        &self,
        cx: &mut Context<'_>,
        head: &[u8],
        end_stream: bool,
        keep_body: bool,
    ) -> Poll<Result<u32, ErrorKind>> {
        let mut shared = self.shared.borrow_mut();
        if let Some(error) = shared.closed {
            return Poll::Ready(Err(error));
        }
        if shared.streams.len() >= shared.max_streams {
            shared.admission.push(cx.waker().clone());
            return Poll::Pending;
        }
        let id = shared.next_stream;
        if id > 0x7fff_fffd {
            // Stream ids are spent: this connection is done; the worker opens another.
            shared.closed = Some(ErrorKind::Reset);
            return Poll::Ready(Err(ErrorKind::Reset));
        }
        shared.next_stream += 2;
        let send_window = shared.peer_stream_window;
        let kept = keep_body.then(BytesMut::new);
        shared.streams.insert(id, Stream { send_window, kept, ..Stream::default() });
        let max_frame = shared.peer_max_frame;
        let end_stream = if end_stream { frame::END_STREAM } else { 0 };
        let mut chunks = head.chunks(max_frame);
        let first = chunks.next().unwrap_or_default();
        let flags = end_stream | if head.len() <= max_frame { frame::END_HEADERS } else { 0 };
        frame::put_frame(&mut shared.write, frame::HEADERS, flags, id, first);
        let rest = chunks.len();
        for (i, chunk) in chunks.enumerate() {
            let flags = if i + 1 == rest { frame::END_HEADERS } else { 0 };
            frame::put_frame(&mut shared.write, frame::CONTINUATION, flags, id, chunk);
        }
        shared.wake_writer();
        Poll::Ready(Ok(id))
    }

    /// Queues as much of `body` as the windows allow, ending the stream with the last
    /// byte; waits for a WINDOW_UPDATE when they allow nothing.
    fn send_body(&self, cx: &mut Context<'_>, id: u32, body: &[u8]) -> Poll<Result<usize, ErrorKind>> {
        let mut shared = self.shared.borrow_mut();
        let Shared { streams, send_window, peer_max_frame, write, .. } = &mut *shared;
        let Some(stream) = streams.get_mut(&id) else { return Poll::Ready(Err(ErrorKind::Reset)) };
        if let Some(Err(error)) = stream.outcome {
            return Poll::Ready(Err(error));
        }
        let allowed = (*send_window).min(stream.send_window).min(*peer_max_frame as i64);
        if allowed <= 0 {
            stream.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = body.len().min(allowed as usize);
        *send_window -= n as i64;
        stream.send_window -= n as i64;
        let flags = if n == body.len() { frame::END_STREAM } else { 0 };
        frame::put_frame(write, frame::DATA, flags, id, &body[..n]);
        shared.wake_writer();
        Poll::Ready(Ok(n))
    }

    fn poll_response(&self, cx: &mut Context<'_>, id: u32) -> Poll<Result<(), ErrorKind>> {
        let mut shared = self.shared.borrow_mut();
        let Some(stream) = shared.streams.get_mut(&id) else { return Poll::Ready(Err(ErrorKind::Reset)) };
        match stream.outcome {
            Some(outcome) => Poll::Ready(outcome),
            None => {
                if !stream.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    stream.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// Removes its stream when the exchange ends, however it ends: a stream dropped
/// before its response (a timeout) is reset, so the server stops sending it.
struct StreamGuard<'a> {
    shared: &'a Rc<RefCell<Shared>>,
    id: u32,
}

impl StreamGuard<'_> {
    /// Takes the finished stream's state out; dropping the guard then finds nothing
    /// to reset and lets a waiting stream open.
    fn finish(&self) -> Stream {
        self.shared.borrow_mut().streams.remove(&self.id).unwrap_or_default()
    }
}

impl Drop for StreamGuard<'_> {
    fn drop(&mut self) {
        let mut shared = self.shared.borrow_mut();
        if let Some(stream) = shared.streams.remove(&self.id)
            && stream.outcome.is_none()
            && shared.closed.is_none()
        {
            frame::put_frame(&mut shared.write, frame::RST_STREAM, 0, self.id, &frame::CANCEL.to_be_bytes());
            shared.wake_writer();
        }
        shared.wake_admission();
    }
}

#[cfg(test)]
mod tests;
