//! Ends an HTTP/2 connection whose client floods frames that make the
//! server work without asking for anything: PRIORITY, WINDOW_UPDATE,
//! SETTINGS and PING. The h2 crate bounds resets, CONTINUATION runs and
//! empty DATA frames, but answers these forever: one client sending
//! PRIORITY frames in a loop kept a core busy (QA: 52 million frames in
//! 6 s, 104 % CPU). NGINX closes such a connection too.
//!
//! The guard reads the frame headers of what the client sends (9 bytes
//! per frame, the payloads are skipped) and counts control frames against
//! an allowance that grows with the work the client asked for: requests
//! (HEADERS frames) and response bytes sent (a downloading client sends
//! WINDOW_UPDATEs in proportion).

/// The client connection preface (RFC 9113 §3.4) before the first frame.
const PREFACE_LEN: usize = 24;
/// Control frames allowed whatever else happens: far more than a browser
/// sends in a connection's life, far fewer than a flood sends in a second.
const BASE_ALLOWANCE: u64 = 10_000;
/// More allowed per request.
const PER_REQUEST: u64 = 100;
/// And one more per this many response bytes sent.
const BYTES_PER_FRAME: u64 = 1024;

const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const WINDOW_UPDATE: u8 = 0x8;
const ACK: u8 = 0x1;

/// Counts what a client's frames ask of the server (see the module docs);
/// `keepalive::ClientIo` feeds it an HTTP/2 connection's bytes.
#[derive(Debug)]
pub(crate) struct FrameCount {
    preface_left: usize,
    header: [u8; 9],
    header_len: usize,
    payload_left: usize,
    control: u64,
    requests: u64,
    written: u64,
}

impl FrameCount {
    pub(crate) fn new() -> FrameCount {
        FrameCount {
            preface_left: PREFACE_LEN,
            header: [0; 9],
            header_len: 0,
            payload_left: 0,
            control: 0,
            requests: 0,
            written: 0,
        }
    }

    /// Reads the frame headers in the next bytes the client sent (frames
    /// may be split anywhere between reads).
    pub(crate) fn read(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let skip = if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len());
                self.preface_left -= n;
                n
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                n
            } else {
                let n = (9 - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                if self.header_len == 9 {
                    self.header_len = 0;
                    self.frame();
                }
                n
            };
            bytes = &bytes[skip..];
        }
    }

    fn frame(&mut self) {
        let [l0, l1, l2, kind, flags, ..] = self.header;
        self.payload_left = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
        match kind {
            HEADERS => self.requests += 1,
            PRIORITY | WINDOW_UPDATE => self.control += 1,
            // Acknowledgements answer the server's own frames.
            SETTINGS | PING if flags & ACK == 0 => self.control += 1,
            _ => {}
        }
    }

    /// Response bytes sent to the client.
    pub(crate) fn wrote(&mut self, bytes: usize) {
        self.written += bytes as u64;
    }

    /// More control frames than the work asked for allows.
    pub(crate) fn flooded(&self) -> bool {
        self.control
            > BASE_ALLOWANCE
                + self.requests.saturating_mul(PER_REQUEST)
                + self.written / BYTES_PER_FRAME
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: usize) -> Vec<u8> {
        let mut out = vec![
            (payload >> 16) as u8,
            (payload >> 8) as u8,
            payload as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        out.resize(9 + payload, 0xAB);
        out
    }

    #[test]
    fn frames_are_counted_across_any_split() {
        let mut stream = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        stream.extend(frame(SETTINGS, 0, 12));
        stream.extend(frame(SETTINGS, ACK, 0));
        stream.extend(frame(HEADERS, 0x4, 30));
        stream.extend(frame(PRIORITY, 0, 5));
        stream.extend(frame(PING, 0, 8));
        stream.extend(frame(PING, ACK, 8));
        stream.extend(frame(WINDOW_UPDATE, 0, 4));
        stream.extend(frame(0x0, 0, 100));
        for piece in [1, 2, 7, 9, 10, 64, stream.len()] {
            let mut count = FrameCount::new();
            for chunk in stream.chunks(piece) {
                count.read(chunk);
            }
            assert_eq!(
                (count.control, count.requests),
                (4, 1),
                "in pieces of {piece}"
            );
            assert_eq!(count.payload_left, 0);
        }
    }

    #[test]
    fn a_flood_is_control_frames_beyond_the_work_asked_for() {
        let mut count = FrameCount::new();
        count.read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        let priority = frame(PRIORITY, 0, 5);
        for _ in 0..BASE_ALLOWANCE {
            count.read(&priority);
        }
        assert!(!count.flooded());
        count.read(&priority);
        assert!(count.flooded());
        // A client that asked for a request, or got a large download
        // (window updates in proportion), has more room.
        count.read(&frame(HEADERS, 0x4, 10));
        assert!(!count.flooded());
        let mut downloading = FrameCount::new();
        downloading.preface_left = 0;
        downloading.written = 100 << 20;
        let update = frame(WINDOW_UPDATE, 0, 4);
        for _ in 0..50_000 {
            downloading.read(&update);
        }
        assert!(!downloading.flooded());
    }
}
