use super::*;

fn head(method: Method, headers: &[(&str, &str)], framing: RequestFraming) -> String {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let mut out = Vec::new();
    encode_request_head(
        &method,
        "/a?b=c",
        &map,
        b"",
        framing,
        "backend:80",
        &mut out,
    );
    String::from_utf8(out).unwrap()
}

fn complete(bytes: &str, method: &Method) -> (ResponseHead, usize) {
    match parse_response_head(bytes.as_bytes(), method, false, &mut 0) {
        Ok(Parsed::Complete(head, length)) => (head, length),
        other => panic!("expected a complete head for {bytes:?}, got {other:?}"),
    }
}

fn error(bytes: &[u8]) -> String {
    match parse_response_head(bytes, &Method::GET, false, &mut 0) {
        Err(reason) => reason,
        other => panic!("expected an error for {bytes:?}, got {other:?}"),
    }
}

#[test]
fn request_framing_follows_the_client_body() {
    assert_eq!(RequestFraming::of(true, Some(0)), RequestFraming::Empty);
    assert_eq!(RequestFraming::of(false, Some(0)), RequestFraming::Empty);
    assert_eq!(
        RequestFraming::of(false, Some(12)),
        RequestFraming::Length(12)
    );
    assert_eq!(RequestFraming::of(false, None), RequestFraming::Chunked);
}

#[test]
fn a_get_goes_as_its_request_line_and_headers_in_order() {
    assert_eq!(
        head(
            Method::GET,
            &[("host", "app"), ("x-one", "1"), ("accept", "*/*")],
            RequestFraming::Empty
        ),
        "GET /a?b=c HTTP/1.1\r\nhost: app\r\nx-one: 1\r\naccept: */*\r\n\r\n"
    );
}

#[test]
fn a_request_without_host_gets_the_backends_address() {
    assert_eq!(
        head(Method::GET, &[("accept", "*/*")], RequestFraming::Empty),
        "GET /a?b=c HTTP/1.1\r\naccept: */*\r\nhost: backend:80\r\n\r\n"
    );
}

#[test]
fn tlsgates_added_lines_follow_the_requests_own_and_precede_the_framing() {
    let map: HeaderMap = [(header::HOST, HeaderValue::from_static("app"))]
        .into_iter()
        .collect();
    let added = b"x-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: https\r\n";
    let mut out = Vec::new();
    encode_request_head(
        &Method::POST,
        "/",
        &map,
        added,
        RequestFraming::Length(2),
        "backend:80",
        &mut out,
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "POST / HTTP/1.1\r\nhost: app\r\nx-forwarded-for: 192.0.2.7\r\n\
         x-forwarded-proto: https\r\ncontent-length: 2\r\n\r\n"
    );
}

#[test]
fn framing_headers_are_tlsgates_own() {
    // The client's framing and Expect never reach the backend; tlsgate's do.
    let client = [
        ("content-length", "99"),
        ("transfer-encoding", "chunked"),
        ("expect", "100-continue"),
        ("host", "app"),
    ];
    assert_eq!(
        head(Method::POST, &client, RequestFraming::Length(5)),
        "POST /a?b=c HTTP/1.1\r\nhost: app\r\ncontent-length: 5\r\n\r\n"
    );
    assert_eq!(
        head(Method::PUT, &client, RequestFraming::Chunked),
        "PUT /a?b=c HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    // An empty POST says so, or the backend would wait for a body; an
    // empty GET says nothing.
    assert_eq!(
        head(Method::POST, &[("host", "app")], RequestFraming::Empty),
        "POST /a?b=c HTTP/1.1\r\nhost: app\r\ncontent-length: 0\r\n\r\n"
    );
    assert!(!head(Method::GET, &client, RequestFraming::Empty).contains("content-length"));
}

#[test]
fn cookies_sent_as_several_fields_go_as_one() {
    let sent = head(
        Method::GET,
        &[("cookie", "a=1"), ("host", "app"), ("cookie", "b=2")],
        RequestFraming::Empty,
    );
    assert_eq!(
        sent,
        "GET /a?b=c HTTP/1.1\r\ncookie: a=1; b=2\r\nhost: app\r\n\r\n"
    );
}

#[test]
fn a_head_is_partial_until_its_empty_line() {
    let full = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    for cut in 0..full.len() - 2 {
        assert!(
            matches!(
                parse_response_head(&full.as_bytes()[..cut], &Method::GET, false, &mut 0),
                Ok(Parsed::Partial)
            ),
            "cut at {cut}"
        );
    }
    let (head, length) = complete(full, &Method::GET);
    assert_eq!(length, full.len() - 2);
    assert_eq!(head.parts.status, StatusCode::OK);
    assert_eq!(head.framing, ResponseFraming::Length(2));
    assert!(head.keep_alive);
    assert_eq!(head.parts.headers["content-length"], "2");
}

#[test]
fn a_head_arriving_a_byte_at_a_time_is_parsed_once_it_ends() {
    // One `scanned` across the pieces, as the backend client keeps it.
    for full in [
        "HTTP/1.1 200 OK\r\nserver: x\r\ncontent-length: 2\r\n\r\nok",
        "HTTP/1.1 200 OK\nserver: x\ncontent-length: 2\n\nok",
    ] {
        let mut scanned = 0;
        let end = full.len() - 2;
        for cut in 1..end {
            assert!(
                matches!(
                    parse_response_head(&full.as_bytes()[..cut], &Method::GET, false, &mut scanned),
                    Ok(Parsed::Partial)
                ),
                "{full:?} cut at {cut}"
            );
            assert_eq!(
                scanned, cut,
                "past the first piece, only new bytes are looked at"
            );
        }
        match parse_response_head(&full.as_bytes()[..end], &Method::GET, false, &mut scanned) {
            Ok(Parsed::Complete(head, length)) => {
                assert_eq!(length, end);
                assert_eq!(head.framing, ResponseFraming::Length(2));
            }
            other => panic!("{full:?}: {:?}", other.map(|_| ())),
        }
    }
    // The size limit holds on the path that skips parsing too.
    let mut scanned = 0;
    let mut huge = b"HTTP/1.1 200 OK\r\nx: ".to_vec();
    assert!(matches!(
        parse_response_head(&huge, &Method::GET, false, &mut scanned),
        Ok(Parsed::Partial)
    ));
    huge.resize(MAX_RESPONSE_HEAD + 10, b'a');
    let Err(err) = parse_response_head(&huge, &Method::GET, false, &mut scanned) else {
        panic!("over the limit, yet not an error");
    };
    assert!(err.contains("64 KiB"), "{err}");
}

#[test]
fn the_body_is_framed_as_rfc_9112_says() {
    let cases: [(&str, Method, ResponseFraming, bool); 10] = [
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            Method::GET,
            ResponseFraming::Chunked,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            Method::GET,
            ResponseFraming::Chunked,
            true,
        ),
        // Chunked not last: the body runs to the close.
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
            Method::GET,
            ResponseFraming::UntilClose,
            false,
        ),
        // Both: Transfer-Encoding wins, the connection is not reused.
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
            Method::GET,
            ResponseFraming::Chunked,
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\n\r\n",
            Method::GET,
            ResponseFraming::UntilClose,
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n",
            Method::HEAD,
            ResponseFraming::Length(0),
            true,
        ),
        (
            "HTTP/1.1 204 No Content\r\n\r\n",
            Method::GET,
            ResponseFraming::Length(0),
            true,
        ),
        (
            "HTTP/1.1 304 Not Modified\r\ncontent-length: 7\r\n\r\n",
            Method::GET,
            ResponseFraming::Length(0),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: keep-alive, close\r\n\r\n",
            Method::GET,
            ResponseFraming::Length(7),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\ncontent-length: 7\r\n\r\n",
            Method::GET,
            ResponseFraming::Length(7),
            false,
        ),
    ];
    for (bytes, method, framing, keep_alive) in cases {
        let (head, _) = complete(bytes, &method);
        assert_eq!(head.framing, framing, "{bytes:?}");
        assert_eq!(head.keep_alive, keep_alive, "{bytes:?}");
    }
}

#[test]
fn repeated_content_lengths_must_agree() {
    let (head, _) = complete(
        "HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\ncontent-length: 3\r\n\r\n",
        &Method::GET,
    );
    assert_eq!(head.framing, ResponseFraming::Length(3));
    for bad in ["3, 4", "abc", "-1", "+5", "", "1 2"] {
        let reason = error(format!("HTTP/1.1 200 OK\r\ncontent-length: {bad}\r\n\r\n").as_bytes());
        assert!(reason.contains("Content-Length"), "{bad:?}: {reason}");
    }
}

#[test]
fn interim_responses_are_skipped_but_101_is_refused() {
    let bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n";
    match parse_response_head(bytes, &Method::POST, false, &mut 0) {
        Ok(Parsed::Interim(length)) => assert_eq!(length, 25),
        other => panic!("{other:?}"),
    }
    let reason = error(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n");
    assert!(reason.contains("101"), "{reason}");
}

#[test]
fn oversized_or_broken_heads_are_errors_that_say_why() {
    let mut huge = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
    huge.resize(MAX_RESPONSE_HEAD + 10, b'a');
    assert!(error(&huge).contains("64 KiB"));
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=MAX_RESPONSE_HEADERS {
        many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert!(error(&many).contains("header lines"));
    assert!(error(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").contains("invalid response head"));
    assert!(error(b"HTTP/1.1 abc Nope\r\n\r\n").contains("invalid response head"));
}

fn decode_all(decoder: &mut ChunkedDecoder, buf: &mut BytesMut) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(data) = decoder.decode(buf)? {
        out.extend_from_slice(&data);
    }
    Ok(out)
}

#[test]
fn a_chunked_body_decodes_whole_or_byte_by_byte() {
    let wire =
        b"5;ext=1\r\nhello\r\n19 ; ext\r\n, chunked world, 25 bytes\r\n0\r\ntrailer: x\r\n\r\nNEXT";
    let mut decoder = ChunkedDecoder::default();
    let mut buf = BytesMut::from(&wire[..]);
    assert_eq!(
        decode_all(&mut decoder, &mut buf).unwrap(),
        b"hello, chunked world, 25 bytes"
    );
    assert!(decoder.is_done());
    // What follows the body stays for the next response.
    assert_eq!(&buf[..], b"NEXT");

    let mut decoder = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for byte in &wire[..wire.len() - 4] {
        assert!(!decoder.is_done());
        buf.extend_from_slice(&[*byte]);
        out.extend(decode_all(&mut decoder, &mut buf).unwrap());
    }
    assert!(decoder.is_done());
    assert_eq!(out, b"hello, chunked world, 25 bytes");
}

#[test]
fn a_broken_chunked_body_is_an_error() {
    for (wire, expect) in [
        (&b"zz\r\n"[..], "invalid chunk size"),
        (b"\r\n", "invalid chunk size"),
        (b"11111111111111111\r\n", "invalid chunk size"),
        (b"+5\r\nhello\r\n", "invalid chunk size"),
        (b" 5\r\nhello\r\n", "invalid chunk size"),
        (b"0x5\r\nhello\r\n", "invalid chunk size"),
        (b"2\r\nabc\r\n", "longer than its size"),
    ] {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::from(wire);
        let reason = decode_all(&mut decoder, &mut buf).unwrap_err();
        assert!(reason.contains(expect), "{wire:?}: {reason}");
    }
    let mut decoder = ChunkedDecoder::default();
    let mut buf = BytesMut::from(&vec![b'1'; MAX_CHUNK_LINE + 1][..]);
    assert!(
        decode_all(&mut decoder, &mut buf)
            .unwrap_err()
            .contains("chunk-size line")
    );
}

#[test]
fn with_transfer_encoding_a_content_length_is_not_passed_on() {
    let (head, _) = complete(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 100\r\n\r\n",
        &Method::GET,
    );
    assert_eq!(head.framing, ResponseFraming::Chunked);
    assert!(!head.parts.headers.contains_key("content-length"));
}

#[test]
fn hop_by_hop_headers_stay_with_the_backend_hop() {
    let (head, _) = complete(
        "HTTP/1.1 200 OK\r\nserver: app\r\nconnection: keep-alive, x-trace\r\n\
         keep-alive: timeout=5\r\nx-trace: 1\r\nupgrade: h2c\r\ntrailer: x-sum\r\n\
         proxy-connection: keep-alive\r\nproxy-authenticate: Basic\r\nte: trailers\r\n\
         transfer-encoding: gzip\r\ntransfer-encoding: chunked\r\nx-kept: 2\r\n\r\n",
        &Method::GET,
    );
    let mut left: Vec<&str> = head.parts.headers.keys().map(HeaderName::as_str).collect();
    left.sort_unstable();
    assert_eq!(left, ["server", "x-kept"]);
    // Read before they were left out: keep-alive, and the last coding of
    // all the Transfer-Encoding fields.
    assert!(head.keep_alive);
    assert_eq!(head.framing, ResponseFraming::Chunked);
    let (head, _) = complete(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: gzip\r\n\r\n",
        &Method::GET,
    );
    assert_eq!(head.framing, ResponseFraming::UntilClose);
    assert!(!head.keep_alive);
}

#[test]
fn connection_tokens_are_read_from_values_with_non_ascii_bytes() {
    let bytes = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close, \x80x\r\n\r\n";
    match parse_response_head(bytes, &Method::GET, false, &mut 0) {
        Ok(Parsed::Complete(head, _)) => assert!(!head.keep_alive),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_101_answers_an_upgrade_with_its_upgrade_header_for_the_client() {
    let bytes = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nKeep-Alive: timeout=5\r\n\r\n\x01\x02hi";
    let Ok(Parsed::Complete(head, length)) =
        parse_response_head(bytes.as_bytes(), &Method::GET, true, &mut 0)
    else {
        panic!("expected a complete head");
    };
    assert_eq!(head.parts.status, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(head.framing, ResponseFraming::Switched);
    assert!(!head.keep_alive);
    // The protocol's first bytes are not part of the head.
    assert_eq!(&bytes.as_bytes()[length..], b"\x01\x02hi");
    let headers = &head.parts.headers;
    assert_eq!(headers["upgrade"], "websocket");
    assert_eq!(headers["connection"], "upgrade");
    assert_eq!(
        headers["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert!(!headers.contains_key("keep-alive"), "{headers:?}");
}

#[test]
fn a_101_without_upgrade_or_unasked_is_an_error_and_other_1xx_still_skip() {
    let Err(reason) = parse_response_head(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\n",
        &Method::GET,
        true,
        &mut 0,
    ) else {
        panic!("a 101 without Upgrade must be refused");
    };
    assert!(reason.contains("no Upgrade header"), "{reason}");
    assert!(matches!(
        parse_response_head(b"HTTP/1.1 100 Continue\r\n\r\n", &Method::GET, true, &mut 0),
        Ok(Parsed::Interim(25))
    ));
    // An upgrade the backend declines is an ordinary response.
    let Ok(Parsed::Complete(head, _)) = parse_response_head(
        b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\nUpgrade: websocket\r\n\r\n",
        &Method::GET,
        true,
        &mut 0,
    ) else {
        panic!("expected a complete head");
    };
    assert_eq!(head.framing, ResponseFraming::Length(0));
    assert!(!head.parts.headers.contains_key("upgrade"));
}
