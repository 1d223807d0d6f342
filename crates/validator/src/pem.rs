//! A PEM scanner that remembers where things are.
//!
//! `rustls_pki_types::pem` parses PEM well but cannot say *which line* of a
//! pasted bundle is broken, and it drops RFC 1421 headers (`Proc-Type`,
//! `DEK-Info`) that legacy encrypted keys need. Operators get far better
//! errors from a scanner that tracks block numbers and lines, so this one is
//! ours. It is deliberately lenient (any line length, CRLF, blank lines,
//! text between blocks, as RFC 7468 allows) and records every departure from
//! canonical form so `--strict` can reject it.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// One `-----BEGIN X-----` … `-----END X-----` block.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    /// The label, e.g. `CERTIFICATE` or `RSA PRIVATE KEY`.
    pub label: String,
    /// RFC 1421 headers such as `Proc-Type` and `DEK-Info`, in order.
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub der: Vec<u8>,
    /// 1-based line number of the BEGIN line.
    pub line: usize,
    /// 1-based number of this block among all blocks in the file.
    pub number: usize,
}

impl Block {
    /// The value of a header, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// "PEM block 2 at line 31" — how messages point at a block.
    pub fn place(&self) -> String {
        format!("PEM block {} at line {}", self.number, self.line)
    }
}

/// Armour that could not be read: a broken block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed {
    /// 1-based line where the problem is.
    pub line: usize,
    /// What is wrong, in words.
    pub detail: String,
}

/// Everything the scanner found in one file.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scanned {
    /// Blocks that decoded, in file order.
    pub blocks: Vec<Block>,
    /// Blocks that did not.
    pub malformed: Vec<Malformed>,
    /// Departures from canonical PEM (one note per kind, first occurrence).
    pub non_canonical: Vec<String>,
}

/// True when the bytes look like PEM rather than DER.
pub(crate) fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// The UTF-8 byte-order mark Windows Notepad writes at the start of a file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// True when the input holds nothing but whitespace (and a UTF-8
/// byte-order mark, which an editor writes even into an empty file).
pub(crate) fn is_blank(bytes: &[u8]) -> bool {
    bytes
        .strip_prefix(UTF8_BOM)
        .unwrap_or(bytes)
        .iter()
        .all(u8::is_ascii_whitespace)
}

/// When `bytes` are UTF-16 text (PowerShell 5's `>` and `Out-File`, Notepad's
/// "Unicode"), says so and how to convert it. OpenSSL cannot read such a
/// file either, and without this the input only reads as "not DER", which
/// sends people looking for the wrong problem. DER never starts with FF or
/// FE (a certificate, key or CRL starts with 0x30), so the byte-order mark
/// is unambiguous; without one, an armour line with a NUL after every
/// character gives it away.
pub(crate) fn utf16_note(bytes: &[u8]) -> Option<String> {
    let order = match bytes {
        [0xFF, 0xFE, ..] => "little-endian, byte-order mark FF FE",
        [0xFE, 0xFF, ..] => "big-endian, byte-order mark FE FF",
        _ if bytes.windows(12).any(|w| w == b"-\0-\0-\0-\0-\0B\0") => "little-endian",
        _ if bytes.windows(12).any(|w| w == b"\0-\0-\0-\0-\0-\0B") => "big-endian",
        _ => return None,
    };
    Some(format!(
        "it is UTF-16 text ({order}), as PowerShell 5's `>` or `Out-File` and Notepad's \"Unicode\" encoding save it, not the ASCII/UTF-8 PEM that TLS tools read; convert it with `iconv -f utf-16 -t utf-8 FILE > FILE.pem` (PowerShell: `Get-Content FILE | Set-Content -Encoding ascii FILE.pem`)"
    ))
}

/// Lenient base64: padding optional, as some tools strip it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Canonical PEM line length (RFC 7468 "strict" form).
const LINE: usize = 64;

/// The part of a block being read.
struct Open {
    label: String,
    line: usize,
    headers: Vec<(String, String)>,
    body: String,
    /// Lengths of the base64 lines, to check the 64-column rule.
    line_lengths: Vec<(usize, usize)>,
    bad: Option<Malformed>,
    seen_data: bool,
}

/// Collects non-canonical notes, keeping the first occurrence of each kind.
#[derive(Default)]
struct Style {
    bom: Option<usize>,
    crlf: Option<usize>,
    doubled_cr: Option<usize>,
    cr_only: bool,
    long_or_short: Option<(usize, usize)>,
    blank: Option<usize>,
    spaces: Option<usize>,
    outside_text: Option<usize>,
    headers: Option<usize>,
}

impl Style {
    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(line) = self.bom {
            notes.push(format!(
                "a UTF-8 byte-order mark (EF BB BF, as Windows Notepad saves) at the start of line {line}"
            ));
        }
        if self.cr_only {
            notes.push(
                "CR-only line endings (old Mac style; convert with `tr '\\r' '\\n'` or `mac2unix`)"
                    .to_string(),
            );
        }
        if let Some(line) = self.crlf {
            notes.push(format!("CRLF line endings (first at line {line})"));
        }
        if let Some(line) = self.doubled_cr {
            notes.push(format!(
                "more than one CR before the LF (first at line {line}: a CRLF file converted to CRLF again; `dos2unix` fixes it)"
            ));
        }
        if let Some((line, len)) = self.long_or_short {
            notes.push(format!(
                "line {line} has {len} base64 characters where canonical PEM has {LINE}"
            ));
        }
        if let Some(line) = self.blank {
            notes.push(format!("a blank line inside a block (line {line})"));
        }
        if let Some(line) = self.spaces {
            notes.push(format!("spaces or tabs in base64 (line {line})"));
        }
        if let Some(line) = self.outside_text {
            notes.push(format!("text outside the PEM blocks (line {line})"));
        }
        if let Some(line) = self.headers {
            notes.push(format!("headers inside a certificate block (line {line})"));
        }
        notes
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// Reads every PEM block in `bytes`. Never fails: problems are reported in
/// [`Scanned::malformed`] and [`Scanned::non_canonical`].
pub(crate) fn scan(bytes: &[u8]) -> Scanned {
    let mut out = Scanned::default();
    let mut style = Style::default();
    let mut open: Option<Open> = None;
    let mut line_no = 0;

    // A file with CRs but no LF at all uses old Mac line endings: its lines
    // end at CR. Otherwise lines end at LF, and any run of CRs before the LF
    // belongs to the line end (as OpenSSL reads it: CRLF, and CR CR LF from
    // a CRLF file converted again). A CR elsewhere stays in the line, where
    // it is reported with its line and column.
    style.cr_only = !bytes.contains(&b'\n') && bytes.contains(&b'\r');
    let separator = if style.cr_only { b'\r' } else { b'\n' };
    for raw in bytes.split(|&b| b == separator) {
        line_no += 1;
        let stripped = strip_trailing_crs(raw);
        match raw.len() - stripped.len() {
            0 => {}
            1 => set_once(&mut style.crlf, line_no),
            _ => set_once(&mut style.doubled_cr, line_no),
        }
        // A byte-order mark is an encoding signature, not text: Notepad
        // writes one at the start of the file, and `cat` of such files puts
        // one at the start of a later line.
        let raw = match stripped.strip_prefix(UTF8_BOM) {
            Some(rest) => {
                set_once(&mut style.bom, line_no);
                rest
            }
            None => stripped,
        };
        let line = String::from_utf8_lossy(raw);
        let trimmed = line.trim();

        if let Some(label) = marker(trimmed, "BEGIN") {
            if let Some(unfinished) = open.take() {
                out.malformed.push(Malformed {
                    line: unfinished.line,
                    detail: format!(
                        "the {} block that starts at line {} has no END line before the next BEGIN at line {line_no}",
                        unfinished.label, unfinished.line
                    ),
                });
            }
            if trimmed.len() != line.len() {
                set_once(&mut style.spaces, line_no);
            }
            open = Some(Open {
                label: label.to_string(),
                line: line_no,
                headers: Vec::new(),
                body: String::new(),
                line_lengths: Vec::new(),
                bad: None,
                seen_data: false,
            });
            continue;
        }

        if let Some(label) = marker(trimmed, "END") {
            match open.take() {
                Some(block) if block.label == label => {
                    finish(block, &mut out, &mut style, line_no);
                }
                Some(block) => out.malformed.push(Malformed {
                    line: line_no,
                    detail: format!(
                        "line {line_no} ends a {label} block but the block opened at line {} is {}",
                        block.line, block.label
                    ),
                }),
                None => out.malformed.push(Malformed {
                    line: line_no,
                    detail: format!("line {line_no} has an END {label} line without a BEGIN line"),
                }),
            }
            continue;
        }

        let Some(block) = open.as_mut() else {
            if !trimmed.is_empty() {
                set_once(&mut style.outside_text, line_no);
            }
            continue;
        };
        if block.bad.is_some() {
            continue;
        }
        if trimmed.is_empty() {
            // A blank line after RFC 1421 headers is their required separator.
            if block.headers.is_empty() || block.seen_data {
                set_once(&mut style.blank, line_no);
            }
            continue;
        }
        if !block.seen_data {
            if let Some((key, value)) = trimmed.split_once(':') {
                block
                    .headers
                    .push((key.trim().to_string(), value.trim().to_string()));
                continue;
            }
            if (line.starts_with(' ') || line.starts_with('\t')) && !block.headers.is_empty() {
                // Continuation of the previous header (RFC 1421 folding).
                if let Some((_, value)) = block.headers.last_mut() {
                    value.push_str(trimmed);
                }
                continue;
            }
        }
        block.seen_data = true;
        let mut count = 0;
        for (column, ch) in line.chars().enumerate() {
            match ch {
                'A'..='Z' | 'a'..='z' | '0'..='9' | '+' | '/' | '=' => {
                    block.body.push(ch);
                    count += 1;
                }
                ' ' | '\t' => set_once(&mut style.spaces, line_no),
                other => {
                    block.bad = Some(Malformed {
                        line: line_no,
                        detail: format!(
                            "line {line_no}, column {}: {other:?} is not a base64 character (inside the {} block that starts at line {}); the file was probably damaged by copy and paste",
                            column + 1,
                            block.label,
                            block.line
                        ),
                    });
                    break;
                }
            }
        }
        block.line_lengths.push((line_no, count));
    }

    if let Some(block) = open {
        out.malformed.push(Malformed {
            line: block.line,
            detail: format!(
                "the {} block that starts at line {} has no END line: the file looks truncated",
                block.label, block.line
            ),
        });
    }
    out.non_canonical = style.notes();
    out
}

/// `line` without the CRs at its end.
fn strip_trailing_crs(line: &[u8]) -> &[u8] {
    let end = line.iter().rposition(|&b| b != b'\r').map_or(0, |i| i + 1);
    &line[..end]
}

/// Matches `-----BEGIN LABEL-----` / `-----END LABEL-----` and returns LABEL.
fn marker<'a>(line: &'a str, kind: &str) -> Option<&'a str> {
    let rest = line
        .strip_prefix("-----")?
        .strip_prefix(kind)?
        .strip_prefix(' ')?;
    let label = rest.strip_suffix("-----")?;
    Some(label.trim())
}

fn finish(block: Open, out: &mut Scanned, style: &mut Style, end_line: usize) {
    if let Some(bad) = block.bad {
        out.malformed.push(bad);
        return;
    }
    if block.body.is_empty() {
        out.malformed.push(Malformed {
            line: block.line,
            detail: format!(
                "the {} block at lines {}-{end_line} is empty",
                block.label, block.line
            ),
        });
        return;
    }
    if let Some((last, rest)) = block.line_lengths.split_last() {
        let wrong = rest
            .iter()
            .find(|(_, len)| *len != LINE)
            .or_else(|| (last.1 > LINE).then_some(last));
        if let Some(&(line, len)) = wrong {
            set_once(&mut style.long_or_short, (line, len));
        }
    }
    if !block.headers.is_empty() && block.label.contains("CERTIFICATE") {
        set_once(&mut style.headers, block.line + 1);
    }
    match BASE64.decode(block.body.as_bytes()) {
        Ok(der) => out.blocks.push(Block {
            label: block.label,
            headers: block.headers,
            der,
            line: block.line,
            number: out.blocks.len() + out.malformed.len() + 1,
        }),
        Err(err) => out.malformed.push(Malformed {
            line: block.line,
            detail: format!(
                "the base64 of the {} block at lines {}-{end_line} does not decode ({err}): the block is truncated or corrupted",
                block.label, block.line
            ),
        }),
    }
}

/// Canonical PEM: 64-character lines, LF, trailing newline.
pub fn encode(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(body.len() + body.len() / LINE + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in body.as_bytes().chunks(LINE) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_text(label: &str, body: &str) -> String {
        format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
    }

    #[test]
    fn canonical_round_trip_has_no_notes() {
        let der: Vec<u8> = (0..200u8).collect();
        let text = encode("CERTIFICATE", &der);
        let scanned = scan(text.as_bytes());
        assert!(scanned.malformed.is_empty());
        assert!(
            scanned.non_canonical.is_empty(),
            "{:?}",
            scanned.non_canonical
        );
        assert_eq!(scanned.blocks.len(), 1);
        assert_eq!(scanned.blocks[0].der, der);
        assert_eq!(scanned.blocks[0].line, 1);
    }

    #[test]
    fn crlf_long_lines_and_text_are_accepted_but_noted() {
        let der: Vec<u8> = (0..200u8).collect();
        let body = base64::engine::general_purpose::STANDARD.encode(&der);
        let text = format!(
            "subject=CN=x\r\n-----BEGIN CERTIFICATE-----\r\n{}\r\n{}\r\n-----END CERTIFICATE-----\r\n",
            &body[..76],
            &body[76..]
        );
        let scanned = scan(text.as_bytes());
        assert_eq!(scanned.blocks.len(), 1);
        assert_eq!(scanned.blocks[0].der, der);
        let notes = scanned.non_canonical.join("; ");
        assert!(notes.contains("CRLF"), "{notes}");
        assert!(notes.contains("line 3 has 76"), "{notes}");
        assert!(notes.contains("text outside"), "{notes}");
    }

    #[test]
    fn bad_character_names_line_and_column() {
        let text = block_text("CERTIFICATE", "MIIB\nMI@B");
        let scanned = scan(text.as_bytes());
        assert!(scanned.blocks.is_empty());
        assert_eq!(scanned.malformed.len(), 1);
        assert_eq!(scanned.malformed[0].line, 3);
        assert!(scanned.malformed[0].detail.contains("column 3"));
    }

    #[test]
    fn missing_end_is_reported() {
        let scanned = scan(b"-----BEGIN CERTIFICATE-----\nMIIB\n");
        assert!(scanned.blocks.is_empty());
        assert!(scanned.malformed[0].detail.contains("no END line"));
    }

    #[test]
    fn headers_are_kept() {
        let text = concat!(
            "-----BEGIN RSA PRIVATE",
            " KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n-----END RSA PRIVATE",
            " KEY-----\n"
        );
        let scanned = scan(text.as_bytes());
        assert_eq!(scanned.blocks.len(), 1);
        assert_eq!(scanned.blocks[0].header("proc-type"), Some("4,ENCRYPTED"));
        assert!(
            scanned.non_canonical.is_empty(),
            "{:?}",
            scanned.non_canonical
        );
    }
}
