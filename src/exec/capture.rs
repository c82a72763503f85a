//! Bounded capture of one output stream, and rendering it into the final (cleaned, redacted,
//! truncated) text.

use std::collections::VecDeque;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

use super::clean::{clean_output, withhold, withhold_cut_end, withhold_cut_start};

/// Extra bytes kept beyond two per displayed char, so that stripped escape sequences do not
/// starve the head or tail of visible text.
const SLACK_BYTES: usize = 1024;
const READ_CHUNK: usize = 64 * 1024;

/// The first and last bytes of a stream plus its total size; memory stays bounded however much
/// the child prints.
#[derive(Debug)]
pub(crate) struct Capture {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    /// Capacity of `head` and of `tail` each.
    cap: usize,
    total: u64,
}

impl Capture {
    /// A capture sized for showing at most `max_chars` chars.
    pub(crate) fn new(max_chars: usize) -> Self {
        Self::with_capacity(max_chars.saturating_mul(2).saturating_add(SLACK_BYTES))
    }

    fn with_capacity(cap: usize) -> Self {
        Self {
            head: Vec::new(),
            tail: VecDeque::new(),
            cap,
            total: 0,
        }
    }

    fn push(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        let to_head = (self.cap - self.head.len()).min(data.len());
        self.head.extend_from_slice(&data[..to_head]);
        data = &data[to_head..];
        if data.len() >= self.cap {
            self.tail.clear();
            data = &data[data.len() - self.cap..];
        } else {
            let overflow = (self.tail.len() + data.len()).saturating_sub(self.cap);
            self.tail.drain(..overflow);
        }
        self.tail.extend(data);
    }

    /// Cleans, withholds the lines with secrets and truncates the captured bytes to at most
    /// `max_chars` chars (plus an omission marker line when anything was cut). With no secrets,
    /// this is the raw text the service matches its checks against.
    pub(crate) fn render(&self, secrets: &[String], max_chars: usize) -> String {
        let (head, tail) = (self.head.as_slice(), self.tail.as_slices());
        if self.total == (head.len() + tail.0.len() + tail.1.len()) as u64 {
            // Head and tail are contiguous: nothing was lost, process it as one text.
            let whole = [head, tail.0, tail.1].concat();
            let text = withhold(&clean_output(&whole), secrets);
            return truncate_whole(&text, max_chars);
        }
        // Bytes were dropped between head and tail: the cut may split a UTF-8 char or a secret.
        let tail = [tail.0, tail.1].concat();
        let head = trim_incomplete_utf8_end(head);
        let tail = skip_utf8_continuations(&tail);
        let dropped = self.total - (head.len() + tail.len()) as u64;
        let head_text = withhold(&withhold_cut_end(&clean_output(head), secrets), secrets);
        let tail_text = withhold(&withhold_cut_start(&clean_output(tail), secrets), secrets);
        truncate_split(&head_text, &tail_text, dropped, max_chars)
    }
}

/// Reads `reader` into `capture` until EOF, a read error, or `stop` is cancelled (used when a
/// grandchild keeps the pipe open after the main child exited).
pub(crate) async fn read_stream<R: AsyncRead + Unpin>(
    mut reader: R,
    mut capture: Capture,
    stop: CancellationToken,
) -> Capture {
    // Read into spare capacity: zeroing a whole chunk first would cost more than most outputs.
    let mut buf = Vec::with_capacity(READ_CHUNK);
    loop {
        buf.clear();
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => capture.push(&buf),
            },
        }
    }
    capture
}

/// Truncates a whole text to `max_chars` chars: the first half and the last half, joined by a
/// marker line.
fn truncate_whole(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let head = first_chars(text, max_chars / 2);
    let tail = last_chars(&text[head.len()..], max_chars - max_chars / 2);
    let omitted = text.len() - head.len() - tail.len();
    join_with_marker(head, omitted as u64, tail)
}

/// Like [`truncate_whole`] for a head and a tail between which `dropped` raw bytes were already
/// lost; the marker counts those plus whatever is cut here.
fn truncate_split(head: &str, tail: &str, dropped: u64, max_chars: usize) -> String {
    let head_part = first_chars(head, max_chars / 2);
    let tail_part = last_chars(tail, max_chars - head_part.chars().count());
    let cut_here = head.len() - head_part.len() + tail.len() - tail_part.len();
    join_with_marker(head_part, dropped + cut_here as u64, tail_part)
}

fn join_with_marker(head: &str, omitted: u64, tail: &str) -> String {
    format!("{head}\n[... {omitted} bytes omitted ...]\n{tail}")
}

fn first_chars(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

fn last_chars(s: &str, n: usize) -> &str {
    if n == 0 {
        return "";
    }
    s.char_indices()
        .rev()
        .nth(n - 1)
        .map_or(s, |(i, _)| &s[i..])
}

/// Drops an incomplete UTF-8 sequence at the end of `bytes` (cut in the middle of a char).
fn trim_incomplete_utf8_end(bytes: &[u8]) -> &[u8] {
    for back in 1..=bytes.len().min(4) {
        let b = bytes[bytes.len() - back];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: keep looking for the lead byte
        }
        let needed = match b {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if needed > back {
            &bytes[..bytes.len() - back]
        } else {
            bytes
        };
    }
    bytes
}

/// Skips UTF-8 continuation bytes at the start of `bytes` (the char they belong to was cut).
fn skip_utf8_continuations(bytes: &[u8]) -> &[u8] {
    let n = bytes
        .iter()
        .take(3)
        .take_while(|b| **b & 0xC0 == 0x80)
        .count();
    &bytes[n..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::clean::WITHHELD;

    fn capture_of(cap: usize, chunks: &[&[u8]]) -> Capture {
        let mut c = Capture::with_capacity(cap);
        for chunk in chunks {
            c.push(chunk);
        }
        c
    }

    #[test]
    fn keeps_head_and_tail_and_counts_total() {
        let c = capture_of(4, &[b"abc", b"defgh", b"ijklmnopqrstuvwxyz"]);
        assert_eq!(c.head, b"abcd");
        assert_eq!(Vec::from(c.tail.clone()), b"wxyz");
        assert_eq!(c.total, 26);
        assert_eq!(c.render(&[], 6), "abc\n[... 20 bytes omitted ...]\nxyz");
    }

    #[test]
    fn short_output_is_untouched() {
        let c = capture_of(8, &[b"hello\n", b"world\n"]);
        assert_eq!(c.render(&[], 100), "hello\nworld\n");
    }

    #[test]
    fn long_output_that_fits_buffers_is_truncated_on_chars() {
        let c = capture_of(1024, &["é".repeat(10).as_bytes()]);
        assert_eq!(c.render(&[], 4), "éé\n[... 12 bytes omitted ...]\néé");
    }

    #[test]
    fn zero_chars_gives_only_the_marker() {
        assert_eq!(truncate_whole("abc", 0), "\n[... 3 bytes omitted ...]\n");
    }

    #[test]
    fn a_line_with_a_secret_is_withheld_before_truncation() {
        let secrets = vec!["topsecret".to_owned()];
        let c = capture_of(1024, &[b"before\naaaa topsecret bbbb\nafter"]);
        let expected = format!("before\n{WITHHELD}\nafter");
        assert_eq!(c.render(&secrets, 100), expected);
        assert_eq!(c.render(&[], 100), "before\naaaa topsecret bbbb\nafter");
    }

    #[test]
    fn a_line_with_a_secret_cut_at_the_capture_boundary_is_withheld() {
        let secrets = vec!["topsecret".to_owned()];
        // head = "xx topse", tail = "cret yy!", with 15 bytes dropped between them.
        let c = capture_of(8, &[b"xx topse", b"DROPPED-DROPPED", b"cret yy!"]);
        let out = c.render(&secrets, 100);
        let expected = format!("{WITHHELD}\n[... 15 bytes omitted ...]\n{WITHHELD}");
        assert_eq!(out, expected);
        assert!(!out.contains("topse") && !out.contains("cret yy"));
    }

    #[test]
    fn cut_utf8_chars_are_dropped_not_garbled() {
        // "é" is C3 A9: the head ends with C3, the tail starts with A9.
        let c = capture_of(2, &[b"a\xC3\xA9", b"zzzz", b"\xC3\xA9b"]);
        assert_eq!(c.head, b"a\xC3");
        assert_eq!(c.render(&[], 10), "a\n[... 8 bytes omitted ...]\nb");
    }
}
