//! The HTTP/1.1 client's tests against scripted peers.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

/// A connection whose server, for each request it reads, writes `responses[i]`
/// piece by piece (so the client meets every split), then closes if `close`.
fn scripted(responses: Vec<Vec<&'static [u8]>>, close: bool) -> H1Connection<DuplexStream> {
    let (client, server) = tokio::io::duplex(1 << 16);
    tokio::spawn(serve(server, responses, close));
    H1Connection::new(client)
}

async fn serve(mut server: DuplexStream, responses: Vec<Vec<&'static [u8]>>, close: bool) {
    for pieces in responses {
        let mut seen = Vec::new();
        while !seen.ends_with(b"\r\n\r\n") {
            let mut byte = [0; 1];
            if server.read(&mut byte).await.unwrap_or(0) == 0 {
                return;
            }
            seen.push(byte[0]);
        }
        for piece in pieces {
            server.write_all(piece).await.expect("client reads");
            tokio::task::yield_now().await;
        }
    }
    if !close {
        // Hold the connection open until the client drops it.
        let _ = server.read(&mut [0; 1]).await;
    }
}

fn bytes_one_by_one(text: &'static [u8]) -> Vec<&'static [u8]> {
    text.chunks(1).collect()
}

#[tokio::test]
async fn content_length_body_is_counted_and_the_connection_kept() {
    let mut conn = scripted(
        vec![
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", b"lo"],
            vec![b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"],
        ],
        false,
    );
    let first = conn.exchange(GET, false, false).await.expect("answered");
    assert_eq!((first.status, first.body_len, first.body.is_none()), (200, 5, true));
    assert!(!conn.is_closed());
    let second = conn.exchange(GET, false, false).await.expect("answered on the same connection");
    assert_eq!((second.status, second.body_len), (404, 0));
    assert!(!conn.is_closed());
}

#[tokio::test]
async fn chunked_body_split_byte_by_byte_is_decoded_with_extensions_and_trailers() {
    let response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: \"7\"\r\n\r\n\
        4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: yes\r\n\r\n";
    let mut conn = scripted(vec![bytes_one_by_one(response)], false);
    let answer = conn.exchange(GET, false, true).await.expect("answered");
    assert_eq!(answer.body.as_deref(), Some(&b"Wikipedia"[..]));
    assert_eq!(answer.body_len, 9);
    assert_eq!(answer.etag.as_ref().map(HeaderValue::as_bytes), Some(&b"\"7\""[..]));
    assert!(!conn.is_closed(), "a complete chunked message keeps the connection");
}

#[tokio::test]
async fn encoded_body_is_kept_for_decoding_even_when_not_asked() {
    let mut conn =
        scripted(vec![vec![b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc"]], false);
    let answer = conn.exchange(GET, false, false).await.expect("answered");
    assert_eq!(answer.content_encoding.as_ref().map(HeaderValue::as_bytes), Some(&b"gzip"[..]));
    assert_eq!(answer.body.as_deref(), Some(&b"abc"[..]));
}

#[tokio::test]
async fn body_without_length_ends_with_the_connection() {
    let mut conn = scripted(vec![vec![b"HTTP/1.1 200 OK\r\n\r\nall ", b"of it"]], true);
    let answer = conn.exchange(GET, false, true).await.expect("answered");
    assert_eq!(answer.body.as_deref(), Some(&b"all of it"[..]));
    assert!(conn.is_closed());
}

#[tokio::test]
async fn connection_close_and_http10_end_the_connection() {
    for head in [
        &b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"[..],
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    ] {
        let mut conn = scripted(vec![vec![head]], false);
        let answer = conn.exchange(GET, false, false).await.expect("answered");
        assert_eq!(answer.status, 200);
        assert!(conn.is_closed(), "{}", String::from_utf8_lossy(head));
    }
    let mut kept =
        scripted(vec![vec![b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"]], false);
    kept.exchange(GET, false, false).await.expect("answered");
    assert!(!kept.is_closed());
}

#[tokio::test]
async fn interim_responses_are_skipped_and_bodiless_statuses_read_no_body() {
    let mut conn = scripted(vec![vec![b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"]], false);
    let answer = conn.exchange(GET, false, false).await.expect("answered");
    assert_eq!((answer.status, answer.body_len), (204, 0));
    assert!(!conn.is_closed());
    let mut head = scripted(vec![vec![b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"]], false);
    let answer = head.exchange(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n", true, false).await.expect("answered");
    assert_eq!((answer.status, answer.body_len), (200, 0), "a HEAD answer has no body whatever its length says");
}

#[tokio::test]
async fn malformed_answers_are_protocol_errors_and_close_the_connection() {
    let responses = [
        &b"HTTP/1.1 2x0 OK\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n0\r\n\r\n",
    ];
    assert_each_fails(&responses, false, ErrorKind::Protocol).await;
}

#[tokio::test]
async fn a_close_before_the_whole_answer_is_a_reset() {
    let responses = [&b""[..], b"HTTP/1.1 200 OK\r\nContent-Le", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"];
    assert_each_fails(&responses, true, ErrorKind::Reset).await;
}

/// Each response, alone on a connection (then closed if `close`), fails the
/// exchange with `want` and leaves the connection closed.
async fn assert_each_fails(responses: &[&'static [u8]], close: bool, want: ErrorKind) {
    for &response in responses {
        let mut conn = scripted(vec![vec![response]], close);
        let outcome = conn.exchange(GET, false, false).await;
        assert_eq!(outcome.err(), Some(want), "{}", String::from_utf8_lossy(response));
        assert!(conn.is_closed());
    }
}

#[tokio::test]
async fn bytes_left_over_after_an_answer_fail_the_next_exchange() {
    let mut conn = scripted(vec![vec![b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nextra"]], false);
    conn.exchange(GET, false, false).await.expect("answered");
    assert_eq!(conn.exchange(GET, false, false).await.err(), Some(ErrorKind::Protocol));
}

#[tokio::test]
async fn an_idle_connection_closed_by_the_server_is_noticed() {
    let mut conn = scripted(vec![vec![b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]], true);
    conn.exchange(GET, false, false).await.expect("answered");
    // The scripted server closes once it has answered: look until the close shows.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !conn.is_closed() {
        assert!(tokio::time::Instant::now() < deadline, "the close was never noticed");
        tokio::task::yield_now().await;
        conn.check_idle();
    }
    let mut open = scripted(vec![vec![b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]], false);
    open.exchange(GET, false, false).await.expect("answered");
    open.check_idle();
    assert!(!open.is_closed(), "an open idle connection stays usable");
}

proptest::proptest! {
    /// Any response head a server may send: framing read from it, or a protocol
    /// error; never a panic.
    #[test]
    fn arbitrary_response_heads_never_panic(
        status in "[0-9]{3}",
        headers in proptest::collection::vec(("[A-Za-z-]{1,20}", "[ -~]{0,30}"), 0..8),
        is_head: bool,
    ) {
        let mut text = format!("HTTP/1.1 {status} X\r\n");
        for (name, value) in &headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        let mut parsed = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut parsed);
        if let Ok(httparse::Status::Complete(_)) = response.parse(text.as_bytes()) {
            let _ = head_of(&response, is_head);
        }
    }
}
