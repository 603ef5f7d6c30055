//! An HTTP/2 connection's task: reads frames and hands each to its stream, writes
//! what the streams queued. It runs on the load thread beside the streams' workers,
//! so their shared state is a `RefCell`, never a lock.

use super::frame::{self, Header};
use super::{CONNECTION_WINDOW, STREAM_WINDOW, Shared};
use crate::load::h1::{Io, classify_io};
use crate::load::recorder::ErrorKind;
use bytes::BytesMut;
use std::cell::RefCell;
use std::rc::Rc;
use std::task::{Context, Poll};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A response header block larger than this (across CONTINUATION frames) is refused.
const MAX_HEADER_BLOCK: usize = 256 * 1024;
const READ_ROOM: usize = 32 * 1024;

pub(super) struct Connection {
    io: Box<dyn Io>,
    read: BytesMut,
    /// Frames being written; refilled from `Shared::write` once written.
    out: Vec<u8>,
    written: usize,
    /// TLS may hold the last record until flushed.
    needs_flush: bool,
    shared: Rc<RefCell<Shared>>,
    decoder: super::hpack::Decoder,
    /// A header block awaiting its CONTINUATION frames: stream, END_STREAM, bytes.
    continuation: Option<(u32, bool, Vec<u8>)>,
    /// Body bytes received since the connection's window was last updated.
    unacknowledged: u32,
    settings_seen: bool,
}

impl Connection {
    pub(super) fn new(io: Box<dyn Io>, shared: Rc<RefCell<Shared>>) -> Self {
        Self {
            io,
            read: BytesMut::with_capacity(READ_ROOM),
            out: Vec::with_capacity(16 * 1024),
            written: 0,
            needs_flush: false,
            shared,
            decoder: super::hpack::Decoder::default(),
            continuation: None,
            unacknowledged: 0,
            settings_seen: false,
        }
    }

    /// Sends the preface with our settings and reads until the server's SETTINGS.
    pub(super) async fn settle(&mut self) -> Result<(), String> {
        let mut hello = frame::PREFACE.to_vec();
        frame::put_settings(
            &mut hello,
            &[(frame::SETTINGS_ENABLE_PUSH, 0), (frame::SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW)],
        );
        // Cannot underflow: the connection window is far above the default.
        frame::put_window_update(&mut hello, 0, CONNECTION_WINDOW - frame::DEFAULT_WINDOW as u32);
        self.io.write_all(&hello).await.map_err(|e| format!("HTTP/2 preface: {e}"))?;
        self.io.flush().await.map_err(|e| format!("HTTP/2 preface: {e}"))?;
        loop {
            if let Some(header) = Header::parse(&self.read) {
                if header.kind != frame::SETTINGS || header.flags & frame::ACK != 0 || header.stream != 0 {
                    return Err("the server did not answer with HTTP/2 SETTINGS (does it speak h2c?)".into());
                }
                if self.read.len() >= frame::HEADER_LEN + header.length {
                    return self.process().map_err(|_| "the server's HTTP/2 SETTINGS are malformed".to_owned());
                }
            }
            match self.io.read_buf(&mut self.read).await {
                Ok(0) => return Err("the server closed the connection during the HTTP/2 handshake".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("HTTP/2 handshake: {e}")),
            }
        }
    }

    /// Runs until the connection fails, the server closes it, or nobody needs it.
    pub(super) async fn run(mut self) {
        let outcome = std::future::poll_fn(|cx| self.poll(cx)).await;
        self.shared.borrow_mut().fail(outcome);
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ErrorKind> {
        loop {
            let mut progress = false;
            if self.read.capacity() - self.read.len() < READ_ROOM / 4 {
                self.read.reserve(READ_ROOM);
            }
            match tokio_util::io::poll_read_buf(std::pin::Pin::new(&mut self.io), cx, &mut self.read) {
                Poll::Ready(Ok(0)) => return Poll::Ready(ErrorKind::Reset),
                Poll::Ready(Ok(_)) => {
                    if let Err(error) = self.process() {
                        return Poll::Ready(error);
                    }
                    progress = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(classify_io(&e)),
                Poll::Pending => {}
            }
            match self.poll_write(cx) {
                Poll::Ready(Ok(wrote)) => progress |= wrote,
                Poll::Ready(Err(error)) => return Poll::Ready(error),
                Poll::Pending => {}
            }
            if !progress {
                let mut shared = self.shared.borrow_mut();
                let idle = self.written == self.out.len() && shared.write.is_empty();
                // Nobody will send on it again: every stream handle is gone, or the
                // connection is going away with nothing left in flight.
                if idle
                    && (Rc::strong_count(&self.shared) == 1 || (shared.closed.is_some() && shared.streams.is_empty()))
                {
                    return Poll::Ready(shared.closed.unwrap_or(ErrorKind::Reset));
                }
                if !shared.writer.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    shared.writer = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
        }
    }

    /// Writes queued frames; `Ready(Ok(true))` when some bytes went out.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, ErrorKind>> {
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
            std::mem::swap(&mut self.out, &mut self.shared.borrow_mut().write);
        }
        if self.written < self.out.len() {
            return match std::pin::Pin::new(&mut self.io).poll_write(cx, &self.out[self.written..]) {
                Poll::Ready(Ok(0)) => Poll::Ready(Err(ErrorKind::Reset)),
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    self.needs_flush = true;
                    Poll::Ready(Ok(true))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(classify_io(&e))),
                Poll::Pending => Poll::Pending,
            };
        }
        if self.needs_flush {
            return match std::pin::Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.needs_flush = false;
                    Poll::Ready(Ok(false))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(classify_io(&e))),
                Poll::Pending => Poll::Pending,
            };
        }
        Poll::Ready(Ok(false))
    }

    /// Handles every complete frame in the read buffer.
    fn process(&mut self) -> Result<(), ErrorKind> {
        while let Some(header) = Header::parse(&self.read) {
            if header.length > frame::MAX_FRAME {
                return Err(ErrorKind::Protocol);
            }
            if self.read.len() < frame::HEADER_LEN + header.length {
                break;
            }
            let whole = self.read.split_to(frame::HEADER_LEN + header.length);
            self.handle(&header, &whole[frame::HEADER_LEN..])?;
        }
        Ok(())
    }

    fn handle(&mut self, header: &Header, payload: &[u8]) -> Result<(), ErrorKind> {
        if self.continuation.is_some() && header.kind != frame::CONTINUATION {
            return Err(ErrorKind::Protocol);
        }
        if !self.settings_seen && header.kind != frame::SETTINGS {
            return Err(ErrorKind::Protocol);
        }
        match header.kind {
            frame::DATA => self.data(header, payload),
            frame::HEADERS => {
                let block = &payload[frame::unpadded(header, payload).ok_or(ErrorKind::Protocol)?];
                let end_stream = header.flags & frame::END_STREAM != 0;
                if header.stream == 0 {
                    return Err(ErrorKind::Protocol);
                }
                if header.flags & frame::END_HEADERS != 0 {
                    self.headers(header.stream, end_stream, block)
                } else {
                    self.continuation = Some((header.stream, end_stream, block.to_vec()));
                    Ok(())
                }
            }
            frame::CONTINUATION => {
                let Some((stream, end_stream, mut block)) = self.continuation.take() else {
                    return Err(ErrorKind::Protocol);
                };
                if stream != header.stream || block.len() + payload.len() > MAX_HEADER_BLOCK {
                    return Err(ErrorKind::Protocol);
                }
                block.extend_from_slice(payload);
                if header.flags & frame::END_HEADERS != 0 {
                    self.headers(stream, end_stream, &block)
                } else {
                    self.continuation = Some((stream, end_stream, block));
                    Ok(())
                }
            }
            frame::RST_STREAM => {
                let mut shared = self.shared.borrow_mut();
                if let Some(stream) = shared.streams.get_mut(&header.stream) {
                    end(stream, Err(ErrorKind::Reset));
                }
                Ok(())
            }
            frame::SETTINGS => self.settings(header, payload),
            // We disabled push in our SETTINGS.
            frame::PUSH_PROMISE => Err(ErrorKind::Protocol),
            frame::PING => {
                if payload.len() != 8 {
                    return Err(ErrorKind::Protocol);
                }
                if header.flags & frame::ACK == 0 {
                    frame::put_frame(&mut self.shared.borrow_mut().write, frame::PING, frame::ACK, 0, payload);
                }
                Ok(())
            }
            frame::GOAWAY => {
                let last =
                    u32::from_be_bytes(payload.get(..4).ok_or(ErrorKind::Protocol)?.try_into().expect("4 bytes"))
                        & 0x7fff_ffff;
                let mut shared = self.shared.borrow_mut();
                shared.closed.get_or_insert(ErrorKind::Reset);
                // Streams above `last` were never processed: they fail; the rest finish.
                shared.fail_streams(ErrorKind::Reset, |id| id > last);
                shared.wake_admission();
                Ok(())
            }
            frame::WINDOW_UPDATE => self.window_update(header, payload),
            // PRIORITY and unknown frame types are ignored (RFC 9113 §4.1, §5.5).
            _ => Ok(()),
        }
    }

    fn data(&mut self, header: &Header, payload: &[u8]) -> Result<(), ErrorKind> {
        if header.stream == 0 {
            return Err(ErrorKind::Protocol);
        }
        let range = frame::unpadded(header, payload).ok_or(ErrorKind::Protocol)?;
        let mut shared = self.shared.borrow_mut();
        let shared = &mut *shared;
        // The whole payload, padding included, counts against the windows.
        let length = payload.len() as u32;
        self.unacknowledged += length;
        if self.unacknowledged >= CONNECTION_WINDOW / 2 {
            frame::put_window_update(&mut shared.write, 0, self.unacknowledged);
            self.unacknowledged = 0;
        }
        let Some(stream) = shared.streams.get_mut(&header.stream) else { return Ok(()) };
        if stream.outcome.is_some() {
            return Ok(());
        }
        if stream.status.is_none() {
            // DATA before the response's HEADERS.
            return Err(ErrorKind::Protocol);
        }
        let data = &payload[range];
        stream.body_len += data.len() as u64;
        if let Some(kept) = stream.kept.as_mut() {
            kept.extend_from_slice(data);
        }
        if header.flags & frame::END_STREAM != 0 {
            end(stream, Ok(()));
        } else {
            stream.unacknowledged += length;
            if stream.unacknowledged >= STREAM_WINDOW / 2 {
                frame::put_window_update(&mut shared.write, header.stream, stream.unacknowledged);
                stream.unacknowledged = 0;
            }
        }
        Ok(())
    }

    /// A complete header block: the response's head, an interim 1xx, or trailers.
    fn headers(&mut self, id: u32, end_stream: bool, block: &[u8]) -> Result<(), ErrorKind> {
        let (mut status, mut content_encoding, mut etag, mut malformed) = (None, None, None, false);
        // Decoded even for a stream nobody waits for: the HPACK table must stay in step.
        self.decoder
            .decode(block, |name, value| match name {
                b":status" => {
                    status = std::str::from_utf8(value).ok().and_then(|s| s.parse::<u16>().ok());
                    malformed |= status.is_none();
                }
                b"content-encoding" => content_encoding = http::HeaderValue::from_bytes(value).ok(),
                b"etag" => etag = http::HeaderValue::from_bytes(value).ok(),
                _ => {}
            })
            .map_err(|_| ErrorKind::Protocol)?;
        if malformed {
            return Err(ErrorKind::Protocol);
        }
        let mut shared = self.shared.borrow_mut();
        let Some(stream) = shared.streams.get_mut(&id) else { return Ok(()) };
        if stream.outcome.is_some() {
            return Ok(());
        }
        match (stream.status, status) {
            // An interim response (100 Continue, 103 Early Hints): the real one follows.
            (None, Some(interim)) if (100..200).contains(&interim) => {
                if end_stream {
                    return Err(ErrorKind::Protocol);
                }
            }
            (None, Some(status)) => {
                stream.status = Some(status);
                // An encoded body is kept so its decoded size can be measured.
                if content_encoding.is_some() && stream.kept.is_none() {
                    stream.kept = Some(BytesMut::new());
                }
                stream.content_encoding = content_encoding;
                stream.etag = etag;
            }
            (None, None) => return Err(ErrorKind::Protocol),
            // Trailers must end the stream.
            (Some(_), _) if !end_stream => return Err(ErrorKind::Protocol),
            (Some(_), _) => {}
        }
        if end_stream {
            end(stream, Ok(()));
        }
        Ok(())
    }

    fn settings(&mut self, header: &Header, payload: &[u8]) -> Result<(), ErrorKind> {
        if header.stream != 0 || !payload.len().is_multiple_of(6) {
            return Err(ErrorKind::Protocol);
        }
        if header.flags & frame::ACK != 0 {
            return Ok(());
        }
        let mut shared = self.shared.borrow_mut();
        let shared = &mut *shared;
        if !self.settings_seen {
            // Until the server says otherwise, streams are unlimited (RFC 9113 §6.5.2).
            shared.max_streams = usize::MAX;
            self.settings_seen = true;
        }
        for setting in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([setting[0], setting[1]]);
            let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
            match id {
                frame::SETTINGS_MAX_CONCURRENT_STREAMS => shared.max_streams = value as usize,
                frame::SETTINGS_INITIAL_WINDOW_SIZE => {
                    if value > 0x7fff_ffff {
                        return Err(ErrorKind::Protocol);
                    }
                    let delta = i64::from(value) - shared.peer_stream_window;
                    shared.peer_stream_window = i64::from(value);
                    for stream in shared.streams.values_mut() {
                        stream.send_window += delta;
                        wake(stream);
                    }
                }
                frame::SETTINGS_MAX_FRAME_SIZE => {
                    if !(16_384..=16_777_215).contains(&value) {
                        return Err(ErrorKind::Protocol);
                    }
                    shared.peer_max_frame = value as usize;
                }
                _ => {}
            }
        }
        frame::put_frame(&mut shared.write, frame::SETTINGS, frame::ACK, 0, &[]);
        shared.wake_admission();
        Ok(())
    }

    fn window_update(&mut self, header: &Header, payload: &[u8]) -> Result<(), ErrorKind> {
        let bytes: [u8; 4] = payload.try_into().map_err(|_| ErrorKind::Protocol)?;
        let increment = i64::from(u32::from_be_bytes(bytes) & 0x7fff_ffff);
        if increment == 0 {
            return Err(ErrorKind::Protocol);
        }
        let mut shared = self.shared.borrow_mut();
        let shared = &mut *shared;
        if header.stream == 0 {
            shared.send_window += increment;
            // Any stream may be waiting to send its body.
            shared.streams.values_mut().for_each(wake);
        } else if let Some(stream) = shared.streams.get_mut(&header.stream) {
            stream.send_window += increment;
            wake(stream);
        }
        Ok(())
    }
}

fn wake(stream: &mut super::Stream) {
    if let Some(waker) = stream.waker.take() {
        waker.wake();
    }
}

fn end(stream: &mut super::Stream, outcome: Result<(), ErrorKind>) {
    stream.outcome = Some(outcome);
    wake(stream);
}
