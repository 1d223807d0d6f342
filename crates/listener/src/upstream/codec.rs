//! HTTP/1.1 on the backend side (RFC 9112): request heads out, response
//! heads and body framing in. Pure functions over byte buffers, so every
//! framing rule is testable without a socket.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};

use crate::headers::{is_hop_by_hop, list_elements, named_by_connection};

/// The largest response head (status line and headers) accepted from a
/// backend. NGINX's default is 4–8 KiB (`proxy_buffer_size`); this is
/// generous so that large cookies and CSP headers pass.
pub(crate) const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Header lines accepted in one response head.
const MAX_RESPONSE_HEADERS: usize = 256;
/// The longest chunk-size line (with extensions) and trailer section.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 64 * 1024;

/// How a request body travels to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestFraming {
    /// No body.
    Empty,
    /// `Content-Length`: exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked` (the client did not say how long).
    Chunked,
}

impl RequestFraming {
    /// From what the client's body says about itself.
    pub(crate) fn of(body_ended: bool, exact_length: Option<u64>) -> Self {
        match (body_ended, exact_length) {
            (true, _) | (false, Some(0)) => RequestFraming::Empty,
            (false, Some(length)) => RequestFraming::Length(length),
            (false, None) => RequestFraming::Chunked,
        }
    }
}

/// Methods whose requests are expected to carry a body: sent without one,
/// they say `Content-Length: 0` so the backend does not wait for one.
fn expects_body(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET
            | Method::HEAD
            | Method::DELETE
            | Method::OPTIONS
            | Method::TRACE
            | Method::CONNECT
    )
}

/// Writes the request line and `headers` for a backend into `out`, then
/// the header lines in `added` (already in wire form). Framing headers
/// are tlsgate's own (`framing`); a client's `Content-Length`,
/// `Transfer-Encoding` and `Expect` are not passed on (tlsgate answers
/// `Expect: 100-continue` itself by reading the body).
/// Several `Cookie` fields, as HTTP/2 clients send them, become one
/// (RFC 9113 §8.2.3). A request without a Host (HTTP/1.0 may omit it)
/// gets `backend` as its Host, as NGINX sends its upstream's name: the
/// HTTP/1.1 request the backend gets must have one (RFC 9112 §3.2).
pub(crate) fn encode_request_head(
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    added: &[u8],
    framing: RequestFraming,
    backend: &str,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut cookies = 0usize;
    let mut host = false;
    for (name, value) in headers {
        host |= name == header::HOST;
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::EXPECT
        {
            continue;
        }
        if name == header::COOKIE {
            cookies += 1;
            if cookies > 1 {
                continue;
            }
            out.extend_from_slice(b"cookie: ");
            for (i, cookie) in headers.get_all(header::COOKIE).iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b"; ");
                }
                out.extend_from_slice(cookie.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !host {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(backend.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(added);
    match framing {
        RequestFraming::Empty if expects_body(method) => {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        RequestFraming::Empty => {}
        RequestFraming::Length(length) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(length.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseFraming {
    /// Exactly this many bytes (0 for HEAD, 204, 304).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the backend closes the connection.
    UntilClose,
    /// None: the backend switched the connection to the protocol the
    /// request asked to upgrade to (101). What follows the head is that
    /// protocol's, carried as bytes both ways.
    Switched,
}

/// A backend's response head, ready to forward.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    /// Status and headers (version HTTP/1.1), without the hop-by-hop ones
    /// (`Connection`, those it names, `Transfer-Encoding`, `Keep-Alive`…).
    pub parts: http::response::Parts,
    /// How its body is delimited.
    pub framing: ResponseFraming,
    /// The connection may carry another request once the body is read.
    pub keep_alive: bool,
}

/// What a look at the bytes read so far found.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// The head is not complete yet: read more.
    Partial,
    /// An interim (1xx) response of this many bytes: skip it, parse again.
    Interim(usize),
    /// A final response head of this many bytes.
    Complete(ResponseHead, usize),
}

/// A head without its end yet: wait for more, up to the size limit.
fn partial(buf: &[u8]) -> Result<Parsed, String> {
    if buf.len() > MAX_RESPONSE_HEAD {
        return Err(format!(
            "response head larger than {} KiB, tlsgate's limit for a backend's status line and headers: look for oversized cookies or headers in that backend's responses",
            MAX_RESPONSE_HEAD / 1024
        ));
    }
    Ok(Parsed::Partial)
}

/// Whether `buf` holds the empty line that ends a head (`\n\n` or
/// `\n\r\n`: httparse takes a bare LF as a line end) at or after `from`,
/// give or take the two bytes an end straddling `from` started with.
fn has_head_end(buf: &[u8], from: usize) -> bool {
    let tail = &buf[from.saturating_sub(2).min(buf.len())..];
    tail.iter().enumerate().any(|(i, &byte)| {
        byte == b'\n'
            && match tail.get(i + 1) {
                Some(b'\n') => true,
                Some(b'\r') => tail.get(i + 2) == Some(&b'\n'),
                _ => false,
            }
    })
}

/// Parses a response head from the start of `buf`, for a request sent
/// with `method`. Errors say what was wrong, for the log line.
///
/// `upgrading`: the request asked to switch protocols (`Upgrade`), so a
/// 101 is its answer; it keeps its `Upgrade` header and comes with
/// `Connection: upgrade`, ready for the client. Otherwise a 101 is an error.
///
/// `scanned` carries what earlier calls on the same head learnt: start it
/// at 0, and at 0 again after consuming bytes. Once a head has come up
/// short, later calls look only through the bytes added since for its
/// end (the empty line) and parse again only when it is there: a head
/// that arrives in many small pieces costs one pass, not one parse from
/// its start per piece (up to 64 KiB each).
pub(crate) fn parse_response_head(
    buf: &[u8],
    method: &Method,
    upgrading: bool,
    scanned: &mut usize,
) -> Result<Parsed, String> {
    if *scanned > 0 && !has_head_end(buf, *scanned) {
        *scanned = buf.len();
        return partial(buf);
    }
    // Uninitialised slots: zeroing 256 of them (8 KiB) for every response
    // cost more than parsing a typical head.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    );
    let length = match parsed {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => {
            *scanned = buf.len();
            return partial(buf);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(format!(
                "more than {MAX_RESPONSE_HEADERS} header lines in the response"
            ));
        }
        Err(err) => return Err(format!("invalid response head: {err}")),
    };
    let code = response.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| format!("invalid status code {code}"))?;
    let switched = status == StatusCode::SWITCHING_PROTOCOLS;
    if switched && !upgrading {
        return Err("the backend switched protocols (101) without being asked to".into());
    }
    if status.is_informational() && !switched {
        return Ok(Parsed::Interim(length));
    }
    let version = if response.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // One copy of the head for all values to share, instead of an
    // allocation per value.
    let head = Bytes::copy_from_slice(&buf[..length]);
    let mut headers = HeaderMap::with_capacity(response.headers.len());
    // The hop-by-hop headers are read here and never put in the map
    // (inserted only to be looked up and removed again, they cost a hashed
    // insert, lookup and removal each per response).
    let mut close = false;
    let mut named: Vec<HeaderName> = Vec::new();
    // Transfer-Encoding: whether there was one, and whether its last coding
    // (over all its fields) is chunked. Per hop: hyper frames the body for
    // the client itself.
    let mut transfer_encoding = false;
    let mut chunked = false;
    for line in response.headers.iter() {
        let name = HeaderName::from_bytes(line.name.as_bytes())
            .map_err(|_| format!("invalid header name {:?}", line.name))?;
        if name == header::CONNECTION {
            for element in list_elements(line.value) {
                close |= element.eq_ignore_ascii_case(b"close");
                named.extend(named_by_connection(element));
            }
            continue;
        }
        if name == header::TRANSFER_ENCODING {
            transfer_encoding = true;
            if let Some(last) = list_elements(line.value).next_back() {
                chunked = last.eq_ignore_ascii_case(b"chunked");
            }
            continue;
        }
        if is_hop_by_hop(&name) && !(switched && name == header::UPGRADE) {
            continue;
        }
        // httparse's value is a slice of `buf`: the same bytes in `head`.
        let start = line.value.as_ptr() as usize - buf.as_ptr() as usize;
        let value = HeaderValue::from_maybe_shared(head.slice(start..start + line.value.len()))
            .map_err(|_| format!("invalid value in header {:?}", line.name))?;
        headers.append(name, value);
    }
    let mut keep_alive = version == Version::HTTP_11 && !close;
    let framing = if switched {
        if !headers.contains_key(header::UPGRADE) {
            return Err(
                "the backend switched protocols (101) without saying to which (no Upgrade header)"
                    .into(),
            );
        }
        named.retain(|name| name != header::UPGRADE);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        ResponseFraming::Switched
    } else if *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        // No body, whatever it says; passed on (a HEAD's length is what a
        // GET would get) when it reads as one length, dropped when not.
        if settle_content_length(&mut headers).is_err() {
            headers.remove(header::CONTENT_LENGTH);
        }
        ResponseFraming::Length(0)
    } else if transfer_encoding {
        // With both, Transfer-Encoding wins and the connection is not
        // reused (RFC 9112 §6.3 ¶3: a smuggling attempt or a broken server).
        if headers.contains_key(header::CONTENT_LENGTH) {
            keep_alive = false;
            // Not passed on with a body that is no longer chunk-coded
            // (RFC 9112 §6.1).
            headers.remove(header::CONTENT_LENGTH);
        }
        if chunked {
            ResponseFraming::Chunked
        } else {
            ResponseFraming::UntilClose
        }
    } else if let Some(length) = settle_content_length(&mut headers)? {
        ResponseFraming::Length(length)
    } else {
        ResponseFraming::UntilClose
    };
    for name in &named {
        headers.remove(name);
    }
    if matches!(
        framing,
        ResponseFraming::UntilClose | ResponseFraming::Switched
    ) {
        keep_alive = false;
    }
    // The response keeps the default version, HTTP/1.1: a proxy answers in
    // its own version (RFC 9110 §6.2). An HTTP/1.0 backend's status line
    // passed on would make hyper close every client connection after one
    // response (HTTP/1.0 has no keep-alive by default).
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    let (parts, ()) = response.into_parts();
    Ok(Parsed::Complete(
        ResponseHead {
            parts,
            framing,
            keep_alive,
        },
        length,
    ))
}

/// The Content-Length, if any. Repeated values must agree (RFC 9110
/// §8.6), and are then replaced by the one value: passed on as sent
/// (`5, 5`, or two fields), an HTTP/2 client resets the stream as
/// malformed (RFC 9113 §8.1.1), as curl and browsers do.
fn settle_content_length(headers: &mut HeaderMap) -> Result<Option<u64>, String> {
    let mut found: Option<u64> = None;
    let mut parts = 0;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in value.as_bytes().split(|b| *b == b',') {
            parts += 1;
            let text = std::str::from_utf8(part).unwrap_or("").trim();
            let length: u64 = (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                .then(|| text.parse().ok())
                .flatten()
                .ok_or_else(|| format!("invalid Content-Length {text:?}"))?;
            match found {
                Some(earlier) if earlier != length => {
                    return Err(format!(
                        "conflicting Content-Length values {earlier} and {length}"
                    ));
                }
                _ => found = Some(length),
            }
        }
    }
    if let Some(length) = found.filter(|_| parts > 1) {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    Ok(found)
}

/// Decodes a chunked body (RFC 9112 §7.1) from a buffer that fills up
/// over time. Chunk extensions and trailers are read and dropped.
#[derive(Debug, Default)]
pub(crate) struct ChunkedDecoder {
    state: ChunkState,
    trailer_bytes: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last (zero) chunk: trailer lines until an empty one.
    Trailers,
    /// The body has ended.
    Done,
}

impl ChunkedDecoder {
    /// The body has ended (the buffer may hold what comes after it).
    pub(crate) fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Takes the next data out of `buf`: `Ok(Some(data))`, or `Ok(None)`
    /// when `buf` holds no more (read more, unless [`Self::is_done`]).
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, String> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE, "chunk-size line")? else {
                        return Ok(None);
                    };
                    let size = line[..].split(|b| *b == b';').next().unwrap_or_default();
                    // 1*HEXDIG, then optional whitespace before any extension
                    // (RFC 9112 §7.1): no sign, no leading space, as a
                    // smuggling-resistant parser must read it.
                    let size = std::str::from_utf8(size)
                        .unwrap_or("")
                        .trim_end_matches([' ', '\t']);
                    let size = (!size.is_empty()
                        && size.len() <= 16
                        && size.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then(|| u64::from_str_radix(size, 16).ok())
                    .flatten()
                    .ok_or_else(|| format!("invalid chunk size {size:?}"))?;
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                    return Ok(Some(data));
                }
                ChunkState::DataEnd => {
                    let Some(line) = take_line(buf, 2, "chunk data end")? else {
                        return Ok(None);
                    };
                    if !line.is_empty() {
                        return Err("chunk data longer than its size".into());
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(line) = take_line(buf, MAX_TRAILERS, "trailer line")? else {
                        return Ok(None);
                    };
                    self.trailer_bytes += line.len() + 2;
                    if self.trailer_bytes > MAX_TRAILERS {
                        return Err(format!("trailers larger than {} KiB", MAX_TRAILERS / 1024));
                    }
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                        return Ok(None);
                    }
                }
                ChunkState::Done => return Ok(None),
            }
        }
    }
}

/// Takes one line (without its CRLF or bare LF) off the front of `buf`;
/// `None` until a whole line is there. A line longer than `limit` is an
/// error naming `what`.
fn take_line(buf: &mut BytesMut, limit: usize, what: &str) -> Result<Option<BytesMut>, String> {
    let Some(end) = buf.iter().position(|b| *b == b'\n') else {
        return if buf.len() > limit {
            Err(format!("{what} longer than {limit} bytes"))
        } else {
            Ok(None)
        };
    };
    let mut line = buf.split_to(end + 1);
    line.truncate(end);
    if line.last() == Some(&b'\r') {
        line.truncate(end - 1);
    }
    if line.len() > limit {
        return Err(format!("{what} longer than {limit} bytes"));
    }
    Ok(Some(line))
}

/// Writes one chunk's size line for `length` bytes of data.
pub(crate) fn chunk_size_line(length: usize) -> Bytes {
    Bytes::from(format!("{length:x}\r\n"))
}

/// The end of a chunked body: the zero chunk and no trailers.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests;
