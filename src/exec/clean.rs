//! Turning raw child output into text that is safe to store and show: decoding, stripping
//! terminal escapes, and redacting secrets.

use std::iter::Peekable;
use std::str::Chars;

/// What every redacted secret is replaced with (fixed length, so it leaks nothing about the
/// secret's length).
pub const MASK: &str = "********";

/// What replaces, whole, each line of output that contains a secret (see [`withhold`]).
pub const WITHHELD: &str = "[line withheld: it contained a secret]";

/// Fragments of a secret shorter than this are not withheld at a cut boundary: shorter pieces are
/// too likely to be ordinary text, and reveal too little to matter.
const MIN_PARTIAL_CHARS: usize = 4;

const ESC: char = '\u{1b}';
const BEL: char = '\u{7}';

/// Decodes `raw` as lossy UTF-8 (invalid bytes become U+FFFD), strips ANSI/terminal escape
/// sequences, drops `\r` and other control characters (except `\n` and `\t`), and trims trailing
/// spaces and tabs from every line.
///
/// Never fails: the CLIs we run may print anything, and the result is only for humans.
pub fn clean_output(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let stripped = strip_escapes(&text);
    stripped
        .split('\n')
        .map(|line| line.trim_end_matches([' ', '\t']))
        .collect::<Vec<_>>()
        .join("\n")
}

fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ESC => skip_escape(&mut chars),
            '\n' | '\t' => out.push(c),
            // `\r`, BEL, backspace, NUL, DEL, C1 controls: invisible or terminal-only noise.
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Consumes the rest of an escape sequence whose ESC has just been read.
fn skip_escape(chars: &mut Peekable<Chars<'_>>) {
    match chars.next() {
        // CSI: parameter/intermediate bytes 0x20..=0x3F, then one final byte 0x40..=0x7E. A
        // malformed sequence ends at the first other char, which is kept (a newline must survive).
        Some('[') => {
            while let Some(&c) = chars.peek() {
                if ('\u{20}'..='\u{3f}').contains(&c) {
                    chars.next();
                } else {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        chars.next();
                    }
                    break;
                }
            }
        }
        // OSC, DCS, SOS, PM, APC: a string ended by BEL or ST (`ESC \`). Stop at a newline so an
        // unterminated sequence cannot swallow the rest of the output.
        Some(']' | 'P' | 'X' | '^' | '_') => {
            while let Some(&c) = chars.peek() {
                if c == '\n' {
                    break;
                }
                chars.next();
                if c == BEL {
                    break;
                }
                if c == ESC {
                    if chars.peek() == Some(&'\\') {
                        chars.next();
                    }
                    break;
                }
            }
        }
        // nF sequences such as `ESC ( B`: intermediates, then one final char.
        Some(c) if ('\u{20}'..='\u{2f}').contains(&c) => {
            for c in chars.by_ref() {
                if !('\u{20}'..='\u{2f}').contains(&c) {
                    break;
                }
            }
        }
        // Any other two-char sequence (`ESC 7`, `ESC =`, `ESC M`, ...) or a trailing ESC.
        _ => {}
    }
}

fn usable(secrets: &[String]) -> impl Iterator<Item = &str> {
    secrets.iter().map(String::as_str).filter(|s| !s.is_empty())
}

/// Where the non-empty `secrets` occur in `text`, as sorted, merged byte ranges.
///
/// Occurrences are collected first (including overlapping ones, and across different secrets)
/// and merged, so that one replacement can never leave a piece of another secret visible.
fn occurrences(text: &str, secrets: &[String]) -> Vec<(usize, usize)> {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for secret in usable(secrets) {
        let mut from = 0;
        while let Some(pos) = text[from..].find(secret) {
            let start = from + pos;
            ranges.push((start, start + secret.len()));
            // Step one char, not the whole secret, to also catch overlapping occurrences.
            from = start + text[start..].chars().next().map_or(1, char::len_utf8);
        }
    }
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start < last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// Replaces every occurrence of each non-empty secret in `text` with [`MASK`].
///
/// For a command line, whose arguments are the secrets themselves; output is [`withhold`]n
/// instead.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let merged = occurrences(text, secrets);
    if merged.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (start, end) in merged {
        out.push_str(&text[copied..start]);
        out.push_str(MASK);
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Replaces every line of `text` that contains (a part of) a non-empty secret with
/// [`WITHHELD`], whole.
///
/// Masking the secret in place would not hide it: in a predictable message such as `User 'x' has
/// been created successfully`, the masked word is the only one missing, so the mask itself
/// tells which word the secret is.
pub fn withhold(text: &str, secrets: &[String]) -> String {
    let ranges = occurrences(text, secrets);
    if ranges.is_empty() {
        return text.to_owned();
    }
    let starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let line_of = |byte: usize| starts.partition_point(|&s| s <= byte) - 1;
    let mut hidden = vec![false; starts.len()];
    for (start, end) in ranges {
        // A secret with a newline in it spans several lines: all of them go.
        hidden[line_of(start)..=line_of(end - 1)].fill(true);
    }
    text.split('\n')
        .zip(hidden)
        .map(|(line, hide)| if hide { WITHHELD } else { line })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Withholds the last line of `text` if `text` ends with a proper prefix (at least
/// [`MIN_PARTIAL_CHARS`] chars) of a secret: `text` was cut right after it, so the rest of the
/// secret was lost and [`withhold`] could not recognise it.
pub(crate) fn withhold_cut_end(text: &str, secrets: &[String]) -> String {
    let longest = usable(secrets)
        .flat_map(|secret| {
            secret
                .char_indices()
                .skip(MIN_PARTIAL_CHARS)
                .map(move |(i, _)| &secret[..i])
        })
        .filter(|prefix| text.ends_with(prefix))
        .map(str::len)
        .max();
    match longest {
        Some(len) => {
            let cut = text.len() - len;
            let line_start = text[..cut].rfind('\n').map_or(0, |i| i + 1);
            format!("{}{WITHHELD}", &text[..line_start])
        }
        None => text.to_owned(),
    }
}

/// Withholds the first line of `text` if `text` starts with a proper suffix (at least
/// [`MIN_PARTIAL_CHARS`] chars) of a secret: the mirror image of [`withhold_cut_end`] for a text
/// whose beginning was cut off.
pub(crate) fn withhold_cut_start(text: &str, secrets: &[String]) -> String {
    let longest = usable(secrets)
        .flat_map(|secret| {
            let count = secret.chars().count();
            secret
                .char_indices()
                .skip(1)
                .take(count.saturating_sub(MIN_PARTIAL_CHARS))
                .map(move |(i, _)| &secret[i..])
        })
        .filter(|suffix| text.starts_with(suffix))
        .map(str::len)
        .max();
    match longest {
        Some(len) => {
            let line_end = text[len..].find('\n').map_or(text.len(), |i| len + i);
            format!("{WITHHELD}{}", &text[line_end..])
        }
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn decodes_invalid_utf8_lossily() {
        assert_eq!(clean_output(b"ok \xff\xfe end"), "ok \u{FFFD}\u{FFFD} end");
    }

    #[test]
    fn strips_csi_osc_and_two_byte_sequences() {
        let raw =
            b"\x1b[1;31mred\x1b[0m \x1b]0;title\x07a\x1b]8;;http://x\x1b\\link\x1b7b\x1b(Bc\x1b";
        assert_eq!(clean_output(raw), "red alinkbc");
    }

    #[test]
    fn malformed_sequences_keep_newlines() {
        assert_eq!(clean_output(b"a\x1b[\nb\x1b]unterminated\nc"), "a\nb\nc");
    }

    #[test]
    fn removes_cr_and_trailing_blanks() {
        assert_eq!(clean_output(b"a  \t\r\nb\r\n  c \n"), "a\nb\n  c\n");
        assert_eq!(clean_output(b"50%\r100%\x07"), "50%100%");
    }

    #[test]
    fn redacts_all_occurrences_and_ignores_empty_secrets() {
        let out = redact("pw=hunter2 again hunter2", &s(&["", "hunter2"]));
        assert_eq!(out, "pw=******** again ********");
        assert_eq!(redact("nothing", &s(&[""])), "nothing");
    }

    #[test]
    fn redacts_overlapping_secrets_completely() {
        assert_eq!(redact("xabcdefx", &s(&["abcd", "cdef"])), "x********x");
        assert_eq!(redact("ababab", &s(&["abab"])), "********");
    }

    #[test]
    fn redacts_non_ascii_secrets() {
        assert_eq!(redact("é-ünï-é", &s(&["ünï"])), "é-********-é");
    }

    #[test]
    fn withholds_every_line_with_a_secret_whole() {
        let text = "✅ User 'bob' has been created successfully\n\nnext line\nsecret again: pw";
        let out = withhold(text, &s(&["successfully", "pw", ""]));
        assert_eq!(out, format!("{WITHHELD}\n\nnext line\n{WITHHELD}"));
        assert_eq!(withhold("nothing here", &s(&["pw"])), "nothing here");
    }

    #[test]
    fn withholds_every_line_a_multi_line_secret_spans() {
        let out = withhold("a\nxx-one\ntwo-yy\nb", &s(&["one\ntwo"]));
        assert_eq!(out, format!("a\n{WITHHELD}\n{WITHHELD}\nb"));
    }

    #[test]
    fn withholds_a_partial_secret_at_cut_end() {
        let secrets = s(&["supersecret"]);
        assert_eq!(
            withhold_cut_end("first\ntoken: super", &secrets),
            format!("first\n{WITHHELD}")
        );
        assert_eq!(withhold_cut_end("token: sup", &secrets), "token: sup"); // too short
        assert_eq!(
            withhold_cut_end("token: supersecret", &secrets),
            "token: supersecret"
        ); // not proper: `withhold` handles whole secrets
    }

    #[test]
    fn withholds_a_partial_secret_at_cut_start() {
        let secrets = s(&["supersecret"]);
        assert_eq!(
            withhold_cut_start("secret rest\nnext", &secrets),
            format!("{WITHHELD}\nnext")
        );
        assert_eq!(withhold_cut_start("ret rest", &secrets), "ret rest");
        assert_eq!(withhold_cut_start("ersecret!", &secrets), WITHHELD);
    }
}
