//! The HTTP/2 client against a scripted peer that writes raw frames: what a real
//! server may send (padding, CONTINUATION, interim answers, trailers, resets,
//! GOAWAY, small windows) and what the client must send back.

use super::frame::{self, Header};
use super::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// The server side of a connection, speaking raw frames.
struct Peer {
    io: DuplexStream,
    encoder: loona_hpack::Encoder<'static>,
}

impl Peer {
    /// Reads the client's preface and settings, then sends `settings`.
    async fn accept(mut io: DuplexStream, settings: &[(u16, u32)]) -> Self {
        let mut preface = [0; 24];
        io.read_exact(&mut preface).await.expect("preface");
        assert_eq!(&preface[..], frame::PREFACE);
        let mut peer = Self { io, encoder: loona_hpack::Encoder::new() };
        let (header, payload) = peer.frame().await;
        assert_eq!((header.kind, header.flags), (frame::SETTINGS, 0));
        assert!(payload.chunks(6).any(|s| s == [0, 2, 0, 0, 0, 0]), "push is disabled");
        let mut out = Vec::new();
        frame::put_settings(&mut out, settings);
        peer.io.write_all(&out).await.expect("settings");
        peer
    }

    async fn frame(&mut self) -> (Header, Vec<u8>) {
        let mut head = [0; frame::HEADER_LEN];
        self.io.read_exact(&mut head).await.expect("a frame header");
        let header = Header::parse(&head).expect("9 bytes");
        let mut payload = vec![0; header.length];
        self.io.read_exact(&mut payload).await.expect("a frame payload");
        (header, payload)
    }

    /// The next frame of `kind`, skipping SETTINGS acks and window updates.
    async fn frame_of(&mut self, kind: u8) -> (Header, Vec<u8>) {
        loop {
            let (header, payload) = self.frame().await;
            if header.kind == kind {
                return (header, payload);
            }
            assert!(matches!(header.kind, frame::SETTINGS | frame::WINDOW_UPDATE), "unexpected frame {header:?}");
        }
    }

    async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let mut out = Vec::new();
        frame::put_frame(&mut out, kind, flags, stream, payload);
        self.io.write_all(&out).await.expect("client reads");
    }

    fn block(&mut self, fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        self.encoder.encode(fields.iter().copied())
    }

    /// A whole 200 answer: HEADERS, then the body in DATA frames.
    async fn answer(&mut self, stream: u32, fields: &[(&[u8], &[u8])], body: &[&[u8]]) {
        let block = self.block(fields);
        let flags = frame::END_HEADERS | if body.is_empty() { frame::END_STREAM } else { 0 };
        self.send(frame::HEADERS, flags, stream, &block).await;
        for (i, chunk) in body.iter().enumerate() {
            let flags = if i + 1 == body.len() { frame::END_STREAM } else { 0 };
            self.send(frame::DATA, flags, stream, chunk).await;
        }
    }
}

/// Runs `script` as the server and `client` against it on one thread, as the load
/// generator does.
fn exchange<S, C, T>(
    settings: &'static [(u16, u32)],
    script: impl FnOnce(Peer) -> S + 'static,
    client: impl FnOnce(H2Stream) -> C,
) -> T
where
    S: Future<Output = ()> + 'static,
    C: Future<Output = T>,
{
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    tokio::task::LocalSet::new().block_on(&runtime, async move {
        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        let server = tokio::task::spawn_local(async move { script(Peer::accept(server_io, settings).await).await });
        let (stream, driver) = handshake(Box::new(client_io)).await.expect("handshake");
        tokio::task::spawn_local(driver);
        let outcome = tokio::time::timeout(Duration::from_secs(5), client(stream)).await.expect("the client finished");
        server.await.expect("the script ran to its end");
        outcome
    })
}

const GET_ROOT: &[u8] = &[0x82, 0x86, 0x84, 0x01, 0x01, b'h'];

#[test]
fn a_response_in_padded_frames_is_counted_and_kept() {
    let answer = exchange(
        &[(frame::SETTINGS_MAX_CONCURRENT_STREAMS, 10)],
        |mut peer| async move {
            let (header, block) = peer.frame_of(frame::HEADERS).await;
            assert_eq!(header.flags, frame::END_HEADERS | frame::END_STREAM);
            assert_eq!(block, GET_ROOT);
            let head = peer.block(&[(b":status", b"201"), (b"etag", b"\"5\""), (b"content-type", b"text/plain")]);
            peer.send(frame::HEADERS, frame::END_HEADERS, header.stream, &head).await;
            peer.send(frame::DATA, frame::PADDED, header.stream, &[3, b'a', b'b', 0, 0, 0]).await;
            peer.send(frame::DATA, frame::END_STREAM, header.stream, b"cd").await;
        },
        |stream| async move { stream.exchange(GET_ROOT, b"", true).await },
    )
    .expect("answered");
    assert_eq!((answer.status, answer.body_len), (201, 4));
    assert_eq!(answer.body.as_deref(), Some(&b"abcd"[..]));
    assert_eq!(answer.etag.as_ref().map(http::HeaderValue::as_bytes), Some(&b"\"5\""[..]));
}

#[test]
fn continuation_interim_answers_and_trailers_are_handled_across_requests() {
    let (first, second) = exchange(
        &[],
        |mut peer| async move {
            let (header, _) = peer.frame_of(frame::HEADERS).await;
            let interim = peer.block(&[(b":status", b"103"), (b"link", b"</a>")]);
            peer.send(frame::HEADERS, frame::END_HEADERS, header.stream, &interim).await;
            let head = peer.block(&[(b":status", b"200"), (b"content-encoding", b"gzip"), (b"x-long", &[b'v'; 300])]);
            let (a, b) = head.split_at(head.len() / 2);
            peer.send(frame::HEADERS, 0, header.stream, a).await;
            peer.send(frame::CONTINUATION, frame::END_HEADERS, header.stream, b).await;
            peer.send(frame::DATA, 0, header.stream, b"zz").await;
            let trailers = peer.block(&[(b"grpc-status", b"0")]);
            peer.send(frame::HEADERS, frame::END_HEADERS | frame::END_STREAM, header.stream, &trailers).await;
            // The second answer reuses the dynamic table the first one filled.
            let (header, _) = peer.frame_of(frame::HEADERS).await;
            assert_eq!(header.stream, 3, "stream ids go up by two");
            peer.answer(header.stream, &[(b":status", b"200"), (b"content-encoding", b"gzip")], &[b"y"]).await;
        },
        |stream| async move {
            let first = stream.exchange(GET_ROOT, b"", false).await.expect("first");
            let second = stream.exchange(GET_ROOT, b"", false).await.expect("second");
            (first, second)
        },
    );
    assert_eq!((first.status, first.body_len), (200, 2));
    assert_eq!(first.body.as_deref(), Some(&b"zz"[..]), "an encoded body is kept for decoding");
    assert_eq!(second.content_encoding.as_ref().map(http::HeaderValue::as_bytes), Some(&b"gzip"[..]));
    assert_eq!(second.body_len, 1);
}

#[test]
fn a_body_waits_for_the_servers_window() {
    let answer = exchange(
        &[(frame::SETTINGS_INITIAL_WINDOW_SIZE, 4)],
        |mut peer| async move {
            let (header, _) = peer.frame_of(frame::HEADERS).await;
            assert_eq!(header.flags, frame::END_HEADERS, "a request with a body does not end with its head");
            let (data, payload) = peer.frame_of(frame::DATA).await;
            assert_eq!((payload.as_slice(), data.flags), (&b"0123"[..], 0), "only the window's worth");
            peer.send(frame::WINDOW_UPDATE, 0, header.stream, &100u32.to_be_bytes()).await;
            let (data, payload) = peer.frame_of(frame::DATA).await;
            assert_eq!((payload.as_slice(), data.flags), (&b"456789"[..], frame::END_STREAM));
            peer.answer(header.stream, &[(b":status", b"201")], &[]).await;
        },
        |stream| async move { stream.exchange(GET_ROOT, b"0123456789", false).await },
    )
    .expect("answered");
    assert_eq!((answer.status, answer.body_len), (201, 0));
}

#[test]
fn resets_and_goaway_fail_their_streams_and_close_the_connection() {
    let (reset, above, below, closed) = exchange(
        &[],
        |mut peer| async move {
            let (first, _) = peer.frame_of(frame::HEADERS).await;
            peer.send(frame::RST_STREAM, 0, first.stream, &2u32.to_be_bytes()).await;
            let (low, _) = peer.frame_of(frame::HEADERS).await;
            let (high, _) = peer.frame_of(frame::HEADERS).await;
            // GOAWAY naming the lower stream as the last one processed.
            let mut goaway = low.stream.to_be_bytes().to_vec();
            goaway.extend_from_slice(&0u32.to_be_bytes());
            peer.send(frame::GOAWAY, 0, 0, &goaway).await;
            assert!(high.stream > low.stream);
            peer.answer(low.stream, &[(b":status", b"200")], &[b"ok"]).await;
        },
        |stream| async move {
            let reset = stream.exchange(GET_ROOT, b"", false).await.err();
            let other = stream.another_stream();
            let low = stream.exchange(GET_ROOT, b"", false);
            let high = async {
                tokio::task::yield_now().await;
                other.exchange(GET_ROOT, b"", false).await
            };
            let (below, above) = tokio::join!(low, high);
            (reset, above.err(), below.map(|a| a.body_len), stream.is_closed())
        },
    );
    assert_eq!(reset, Some(ErrorKind::Reset), "RST_STREAM");
    assert_eq!(above, Some(ErrorKind::Reset), "a stream above GOAWAY's last id");
    assert_eq!(below, Ok(2), "a stream at or below it still finishes");
    assert!(closed, "no new streams after GOAWAY");
}

#[test]
fn a_request_given_up_on_is_reset_with_cancel() {
    let outcome = exchange(
        &[],
        |mut peer| async move {
            let (header, _) = peer.frame_of(frame::HEADERS).await;
            let (reset, code) = peer.frame_of(frame::RST_STREAM).await;
            assert_eq!((reset.stream, code.as_slice()), (header.stream, &frame::CANCEL.to_be_bytes()[..]));
            // A late answer to the cancelled stream is ignored; the next works.
            peer.answer(header.stream, &[(b":status", b"200")], &[b"late"]).await;
            let (next, _) = peer.frame_of(frame::HEADERS).await;
            peer.answer(next.stream, &[(b":status", b"204")], &[]).await;
        },
        |stream| async move {
            let gave_up = tokio::time::timeout(Duration::from_millis(50), stream.exchange(GET_ROOT, b"", false)).await;
            assert!(gave_up.is_err(), "the server never answered in time");
            stream.exchange(GET_ROOT, b"", false).await.map(|a| a.status)
        },
    );
    assert_eq!(outcome, Ok(204));
}

#[test]
fn pings_are_answered_and_streams_wait_for_the_servers_limit() {
    // The client has applied the limit once it has answered the PING sent after it.
    let (acked, limit_applied) = tokio::sync::oneshot::channel();
    let statuses = exchange(
        &[(frame::SETTINGS_MAX_CONCURRENT_STREAMS, 1)],
        |mut peer| async move {
            peer.send(frame::PING, 0, 0, b"12345678").await;
            let (ack, payload) = peer.frame_of(frame::PING).await;
            assert_eq!((ack.flags, payload.as_slice()), (frame::ACK, &b"12345678"[..]));
            let _ = acked.send(());
            let (first, _) = peer.frame_of(frame::HEADERS).await;
            // The second stream may not open before the first ends (limit 1).
            let early = tokio::time::timeout(Duration::from_millis(50), peer.frame()).await;
            assert!(early.is_err(), "a stream opened beyond the server's limit: {:?}", early.map(|f| f.0));
            peer.answer(first.stream, &[(b":status", b"200")], &[]).await;
            let (second, _) = peer.frame_of(frame::HEADERS).await;
            assert_eq!(second.stream, first.stream + 2);
            peer.answer(second.stream, &[(b":status", b"202")], &[]).await;
        },
        |stream| async move {
            limit_applied.await.expect("the script acknowledged the PING");
            let other = stream.another_stream();
            let (a, b) = tokio::join!(stream.exchange(GET_ROOT, b"", false), other.exchange(GET_ROOT, b"", false));
            let mut statuses = [a.expect("first").status, b.expect("second").status];
            statuses.sort_unstable();
            statuses
        },
    );
    assert_eq!(statuses, [200, 202]);
}

#[test]
fn a_server_that_does_not_speak_http2_fails_the_handshake() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let error = runtime.block_on(async {
        let (client_io, mut server_io) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut preface = [0; 24];
            let _ = server_io.read_exact(&mut preface).await;
            let _ = server_io.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
        });
        handshake(Box::new(client_io)).await.err()
    });
    assert!(error.is_some_and(|e| e.contains("SETTINGS")));
}

#[test]
fn malformed_frames_fail_every_stream_as_protocol_errors() {
    let outcome = exchange(
        &[],
        |mut peer| async move {
            let (header, _) = peer.frame_of(frame::HEADERS).await;
            // DATA before any HEADERS on the stream.
            peer.send(frame::DATA, frame::END_STREAM, header.stream, b"x").await;
        },
        |stream| async move { (stream.exchange(GET_ROOT, b"", false).await.err(), stream.is_closed()) },
    );
    assert_eq!(outcome, (Some(ErrorKind::Protocol), true));
}
