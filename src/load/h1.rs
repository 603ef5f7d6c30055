//! The load generator's HTTP/1.1 client: one connection, one request in flight, the
//! request written from bytes encoded once per run (or per request for the API mix)
//! and the response head parsed by `httparse`, the parser hyper itself uses.
//!
//! Why not hyper's client: the load generator must cost no more per request than wrk
//! does, or it becomes the bottleneck it is meant to measure around. hyper's HTTP/1.1
//! client builds an `http::Request` with a header map per request, hands it to its
//! dispatcher through a channel, encodes it, and parses each response into a header
//! map and a streaming body; perf put about 6 µs of user time per request there, wrk
//! spends about 1.3 µs (results/load.md). This client writes bytes and reads only
//! what the recorder needs: the status, the framing, `Content-Encoding`, `ETag`, and
//! whether the server will close the connection.
//!
//! What it supports is what a load test meets: `Content-Length` and chunked bodies,
//! bodies delimited by the connection's close, interim 1xx responses, `Connection:
//! close` and HTTP/1.0 servers. It sends no `Expect: 100-continue` and never pipelines.

use super::conn::Answer;
use super::recorder::ErrorKind;
use bytes::{Buf, BytesMut};
use http::HeaderValue;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A byte stream the client can speak over: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A response head larger than this is refused (hyper's default limit is ~400 KiB;
/// a load target sending more is misbehaving).
const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed per response; more is a protocol error.
const MAX_HEADERS: usize = 64;
/// Reads ask for at least this much room.
const READ_ROOM: usize = 16 * 1024;

/// How the response body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// What the head said, copied out of the read buffer so the body can be read.
struct Head {
    status: u16,
    framing: Framing,
    content_encoding: Option<HeaderValue>,
    etag: Option<HeaderValue>,
    /// The server will close the connection after this response.
    closes: bool,
}

/// One HTTP/1.1 connection over `I` (a TCP or TLS `conn::Stream`; the tests' duplex
/// pipes), monomorphised: no dynamic dispatch per read or write.
pub struct H1Connection<I = super::conn::Stream> {
    io: I,
    /// Bytes read and not yet consumed; a response never leaves bytes behind in a
    /// well-behaved exchange.
    read: BytesMut,
    /// No further request may be sent: the server closed or will close it, or an
    /// exchange failed part-way.
    closed: bool,
}

impl<I: Io> H1Connection<I> {
    pub fn new(io: I) -> Self {
        Self { io, read: BytesMut::with_capacity(READ_ROOM), closed: false }
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Notices, without waiting, that the server closed an idle connection (or sent
    /// something unasked, such as a 408 before closing): such a connection is not
    /// sent into.
    pub fn check_idle(&mut self) {
        self.reserve();
        if futures_util::FutureExt::now_or_never(self.io.read_buf(&mut self.read)).is_some() {
            self.closed = true;
        }
    }

    /// Writes `request` (a whole encoded request) and reads its response. Any error
    /// leaves the connection closed: its state is unknown.
    pub async fn exchange(&mut self, request: &[u8], is_head: bool, keep_body: bool) -> Result<Answer, ErrorKind> {
        let outcome = self.try_exchange(request, is_head, keep_body).await;
        if outcome.is_err() {
            self.closed = true;
        }
        outcome
    }

    async fn try_exchange(&mut self, request: &[u8], is_head: bool, keep_body: bool) -> Result<Answer, ErrorKind> {
        if !self.read.is_empty() {
            // Bytes nobody asked for: the exchange would be misread.
            return Err(ErrorKind::Protocol);
        }
        self.io.write_all(request).await.map_err(|e| classify_io(&e))?;
        // A no-op for TCP; TLS may hold the last record until flushed.
        self.io.flush().await.map_err(|e| classify_io(&e))?;
        let head = loop {
            let head = self.read_head(is_head).await?;
            // Interim responses (100 Continue, 103 Early Hints) precede the real one.
            if !(100..200).contains(&head.status) || head.status == 101 {
                break head;
            }
        };
        if head.status == 101 {
            // Switching protocols: this connection no longer speaks HTTP/1.1.
            self.closed = true;
        }
        let keep = keep_body || head.content_encoding.is_some();
        let mut kept = keep.then(BytesMut::new);
        let body_len = match head.framing {
            Framing::None => 0,
            Framing::Length(length) => self.read_exact_body(length, kept.as_mut()).await?,
            Framing::Chunked => self.read_chunked_body(kept.as_mut()).await?,
            Framing::UntilClose => {
                self.closed = true;
                self.read_until_close(kept.as_mut()).await?
            }
        };
        if head.closes {
            self.closed = true;
        }
        Ok(Answer {
            status: head.status,
            content_encoding: head.content_encoding,
            etag: head.etag,
            body_len,
            body: kept.map(BytesMut::freeze),
        })
    }

    async fn read_head(&mut self, is_head: bool) -> Result<Head, ErrorKind> {
        loop {
            if !self.read.is_empty() {
                // Uninitialised: filling 64 empty headers (2 KiB) before every parse cost
                // more than parsing the few a response has.
                let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
                let mut response = httparse::Response::new(&mut []);
                let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                    &mut response,
                    &self.read,
                    &mut headers,
                );
                match parsed {
                    Ok(httparse::Status::Complete(length)) => {
                        let head = head_of(&response, is_head)?;
                        self.read.advance(length);
                        return Ok(head);
                    }
                    Ok(httparse::Status::Partial) if self.read.len() < MAX_HEAD => {}
                    Ok(httparse::Status::Partial) | Err(_) => return Err(ErrorKind::Protocol),
                }
            }
            if self.fill().await? == 0 {
                // Closed before (or during) the head: the request went unanswered.
                return Err(ErrorKind::Reset);
            }
        }
    }

    async fn read_exact_body(&mut self, length: u64, mut kept: Option<&mut BytesMut>) -> Result<u64, ErrorKind> {
        let mut remaining = length;
        while remaining > 0 {
            if self.read.is_empty() && self.fill().await? == 0 {
                return Err(ErrorKind::Reset);
            }
            let take = self.read.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
            self.consume(take, kept.as_deref_mut());
            remaining -= take as u64;
        }
        Ok(length)
    }

    async fn read_chunked_body(&mut self, mut kept: Option<&mut BytesMut>) -> Result<u64, ErrorKind> {
        let mut total = 0;
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.read) {
                    Ok(httparse::Status::Complete((line, size))) => {
                        self.read.advance(line);
                        break size;
                    }
                    Ok(httparse::Status::Partial) if self.read.len() < MAX_HEAD => {}
                    Ok(httparse::Status::Partial) | Err(_) => return Err(ErrorKind::Protocol),
                }
                if self.fill().await? == 0 {
                    return Err(ErrorKind::Reset);
                }
            };
            if size == 0 {
                break;
            }
            total += self.read_exact_body(size, kept.as_deref_mut()).await?;
            if self.read_line().await? != 0 {
                // A chunk's data must end exactly at its CRLF.
                return Err(ErrorKind::Protocol);
            }
        }
        // Trailer fields, then the empty line that ends the message.
        while self.read_line().await? != 0 {}
        Ok(total)
    }

    async fn read_until_close(&mut self, mut kept: Option<&mut BytesMut>) -> Result<u64, ErrorKind> {
        let mut total = 0;
        loop {
            let available = self.read.len();
            total += available as u64;
            self.consume(available, kept.as_deref_mut());
            if self.fill().await? == 0 {
                return Ok(total);
            }
        }
    }

    /// Consumes one line up to its CRLF; returns its length without the CRLF.
    async fn read_line(&mut self) -> Result<usize, ErrorKind> {
        loop {
            if let Some(end) = self.read.windows(2).position(|pair| pair == b"\r\n") {
                self.read.advance(end + 2);
                return Ok(end);
            }
            if self.read.len() >= MAX_HEAD {
                return Err(ErrorKind::Protocol);
            }
            if self.fill().await? == 0 {
                return Err(ErrorKind::Reset);
            }
        }
    }

    /// Moves `n` buffered bytes into `kept`, or drops them when only counted.
    fn consume(&mut self, n: usize, kept: Option<&mut BytesMut>) {
        match kept {
            Some(kept) => kept.extend_from_slice(&self.read.split_to(n)),
            None => self.read.advance(n),
        }
    }

    /// Reads once; 0 means the server closed the connection.
    async fn fill(&mut self) -> Result<usize, ErrorKind> {
        self.reserve();
        self.io.read_buf(&mut self.read).await.map_err(|e| classify_io(&e))
    }

    fn reserve(&mut self) {
        // With nothing buffered, `reserve` reuses the allocation from its start.
        if self.read.capacity() - self.read.len() < READ_ROOM / 4 {
            self.read.reserve(READ_ROOM);
        }
    }
}

/// Reads the parts of a complete head that matter here.
fn head_of(response: &httparse::Response<'_, '_>, is_head: bool) -> Result<Head, ErrorKind> {
    let status = response.code.ok_or(ErrorKind::Protocol)?;
    let http10 = response.version == Some(0);
    let mut head = Head { status, framing: Framing::UntilClose, content_encoding: None, etag: None, closes: http10 };
    let mut length: Option<u64> = None;
    let mut chunked = None;
    for header in response.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value).ok().and_then(|v| v.trim().parse::<u64>().ok());
            match (value, length) {
                (None, _) => return Err(ErrorKind::Protocol),
                (Some(new), Some(old)) if new != old => return Err(ErrorKind::Protocol),
                (Some(new), _) => length = Some(new),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked only if it is the last coding; anything else reads to the close.
            let last = header.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for option in header.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if option.eq_ignore_ascii_case(b"close") {
                    head.closes = true;
                } else if option.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    head.closes = false;
                }
            }
        } else if name.eq_ignore_ascii_case("content-encoding") {
            head.content_encoding = Some(HeaderValue::from_bytes(header.value).map_err(|_| ErrorKind::Protocol)?);
        } else if name.eq_ignore_ascii_case("etag") {
            head.etag = Some(HeaderValue::from_bytes(header.value).map_err(|_| ErrorKind::Protocol)?);
        }
    }
    head.framing = if is_head || (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::None
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(length)) => Framing::Length(length),
            (None, None) => Framing::UntilClose,
        }
    };
    Ok(head)
}

pub(super) fn classify_io(error: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as Io;
    match error.kind() {
        Io::TimedOut => ErrorKind::Timeout,
        Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe | Io::UnexpectedEof => ErrorKind::Reset,
        _ => ErrorKind::Protocol,
    }
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;
