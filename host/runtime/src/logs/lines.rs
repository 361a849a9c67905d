//! Splitting a byte stream into lines: owns partial-line buffering, the line-length cap and CRLF handling. Pure: no
//! I/O, no decoding (lines stay bytes; callers decode lossily).
//!
//! Complete lines that lie whole in one chunk can be handed over as one run of bytes ([`LineSink::run`]), so that
//! a consumer can search the run at once instead of line by line; the default splits the run the same way.

use std::path::Path;

/// One line of a log, without its `\n` (or `\r\n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    pub bytes: &'a [u8],
    /// The line was longer than the cap: `bytes` is its start and the rest was skipped.
    pub cut: bool,
}

/// Where lines go.
pub trait LineSink {
    fn line(&mut self, line: Line<'_>);

    /// Complete lines as they lay in one chunk: `run` ends with `\n` and nothing of it was emitted or cut yet. Each
    /// of its lines must be handled as [`line`](LineSink::line) would be, cut to `max` bytes; the default does
    /// exactly that.
    fn run(&mut self, run: &[u8], max: usize) {
        split_run(run, max, &mut |line| self.line(line));
    }
}

impl<F: FnMut(Line<'_>)> LineSink for F {
    fn line(&mut self, line: Line<'_>) {
        self(line);
    }
}

/// Where the lines of several files go, with the path of the file each came from.
pub trait FileSink {
    fn line(&mut self, path: &Path, line: Line<'_>);

    /// As [`LineSink::run`].
    fn run(&mut self, path: &Path, run: &[u8], max: usize);
}

/// A [`FileSink`] as the [`LineSink`] of the file at `path`.
#[derive(Debug)]
pub struct AtPath<'a, S> {
    pub path: &'a Path,
    pub sink: &'a mut S,
}

impl<S: FileSink> LineSink for AtPath<'_, S> {
    fn line(&mut self, line: Line<'_>) {
        self.sink.line(self.path, line);
    }

    fn run(&mut self, run: &[u8], max: usize) {
        self.sink.run(self.path, run, max);
    }
}

/// Emits the lines of `run` (complete lines, ending with `\n`), cut to `max` bytes.
pub(crate) fn split_run(run: &[u8], max: usize, emit: &mut impl FnMut(Line<'_>)) {
    for raw in run.strip_suffix(b"\n").unwrap_or(run).split(|b| *b == b'\n') {
        emit(capped(strip_cr(raw), max));
    }
}

/// The line of `run` whose `\n` is at `end`, as [`split_run`] emits it.
pub(crate) fn line_ending_at(run: &[u8], end: usize, max: usize) -> Line<'_> {
    let start = memchr::memrchr(b'\n', &run[..end]).map_or(0, |i| i + 1);
    capped(strip_cr(&run[start..end]), max)
}

/// Turns chunks of a file into lines. Holds at most `max + 1` bytes of an unfinished line, whatever the input.
#[derive(Debug)]
pub struct LineSplitter {
    partial: Vec<u8>,
    max: usize,
    /// Inside an over-long line whose start was already emitted: bytes up to the next `\n` are dropped.
    skipping: bool,
}

impl LineSplitter {
    /// `max` is the longest line kept whole, in bytes (at least 1).
    pub fn new(max: usize) -> Self {
        LineSplitter { partial: Vec::new(), max: max.max(1), skipping: false }
    }

    /// Changes the longest line kept whole (a reload); an unfinished line already longer is cut at the new length.
    pub(crate) fn set_max(&mut self, max: usize) {
        self.max = max.max(1);
        self.partial.truncate(self.max + 1);
    }

    /// Emits every line that `chunk` completes; keeps the unfinished rest.
    pub fn feed(&mut self, chunk: &[u8], emit: &mut impl FnMut(Line<'_>)) {
        self.feed_runs(chunk, emit);
    }

    /// [`feed`](LineSplitter::feed), handing the lines that lie whole in `chunk` to the sink as one run.
    pub fn feed_runs(&mut self, chunk: &[u8], sink: &mut impl LineSink) {
        let Some(first) = memchr::memchr(b'\n', chunk) else {
            self.extend(chunk, &mut |line| sink.line(line));
            return;
        };
        self.finish(&chunk[..first], &mut |line| sink.line(line));
        let rest = &chunk[first + 1..];
        let whole = memchr::memrchr(b'\n', rest).map_or(0, |last| last + 1);
        if whole > 0 {
            sink.run(&rest[..whole], self.max);
        }
        self.extend(&rest[whole..], &mut |line| sink.line(line));
    }

    /// Emits the unfinished line, if any, as a line: the file it came from is being left (rotated or truncated).
    pub fn flush(&mut self, emit: &mut impl FnMut(Line<'_>)) {
        if !self.partial.is_empty() {
            self.finish(&[], emit);
        }
        self.skipping = false;
    }

    /// Ends the current line with `tail` (the bytes before its `\n`).
    fn finish(&mut self, tail: &[u8], emit: &mut impl FnMut(Line<'_>)) {
        if self.skipping {
            self.skipping = false;
            return;
        }
        if self.partial.is_empty() {
            // The common case: the whole line is in the chunk, emitted without copying.
            emit(capped(strip_cr(tail), self.max));
            return;
        }
        // `partial` holds at most `max + 1` bytes; never grow it beyond that.
        let room = (self.max + 1).saturating_sub(self.partial.len());
        self.partial.extend_from_slice(&tail[..tail.len().min(room)]);
        let whole = tail.len() <= room;
        let line = if whole { strip_cr(&self.partial) } else { &self.partial[..] };
        if whole {
            emit(capped(line, self.max));
        } else {
            emit(Line { bytes: &line[..self.max], cut: true });
        }
        self.partial.clear();
    }

    /// Buffers the start of an unfinished line, cutting it as soon as it is known to be over-long.
    fn extend(&mut self, chunk: &[u8], emit: &mut impl FnMut(Line<'_>)) {
        if self.skipping || chunk.is_empty() {
            return;
        }
        // One byte of slack: a line of exactly `max` bytes may still end in `\r\n`.
        if self.partial.len() + chunk.len() > self.max + 1 {
            let take = self.max.saturating_sub(self.partial.len());
            self.partial.extend_from_slice(&chunk[..take]);
            emit(Line { bytes: &self.partial[..self.max], cut: true });
            self.partial.clear();
            self.skipping = true;
        } else {
            self.partial.extend_from_slice(chunk);
        }
    }
}

fn capped(line: &[u8], max: usize) -> Line<'_> {
    if line.len() > max { Line { bytes: &line[..max], cut: true } } else { Line { bytes: line, cut: false } }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` and returns the lines as (text, cut).
    fn split(max: usize, chunks: &[&[u8]], flush: bool) -> Vec<(String, bool)> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut emit = |l: Line<'_>| out.push((String::from_utf8_lossy(l.bytes).into_owned(), l.cut));
        for c in chunks {
            s.feed(c, &mut emit);
            assert!(s.partial.len() <= max + 1, "partial grew to {}", s.partial.len());
        }
        if flush {
            s.flush(&mut emit);
        }
        out
    }

    fn whole(lines: &[&str]) -> Vec<(String, bool)> {
        lines.iter().map(|l| (l.to_string(), false)).collect()
    }

    #[test]
    fn splits_lines_across_chunks_and_strips_crlf() {
        assert_eq!(split(100, &[b"a\nb", b"c\r\nd\r", b"\n\n", b"tail"], false), whole(&["a", "bc", "d", ""]));
        assert_eq!(split(100, &[b"a\nb", b"c\r\nd\r", b"\n\n", b"tail"], true), whole(&["a", "bc", "d", "", "tail"]));
    }

    #[test]
    fn cuts_long_lines_and_resumes_at_the_next_newline() {
        // In one chunk.
        assert_eq!(split(4, &[b"abcdefgh\nok\n"], false), vec![("abcd".into(), true), ("ok".into(), false)]);
        // Spread over chunks, the cut is emitted as soon as it is known and the rest is skipped.
        assert_eq!(
            split(4, &[b"ab", b"cdef", b"ghij", b"kl\nok\n"], false),
            vec![("abcd".into(), true), ("ok".into(), false)]
        );
        // Partial then a long finishing tail.
        assert_eq!(split(4, &[b"ab", b"cdefg\nok\n"], false), vec![("abcd".into(), true), ("ok".into(), false)]);
    }

    #[test]
    fn a_line_of_exactly_max_bytes_is_whole_even_with_crlf() {
        assert_eq!(split(4, &[b"abcd\r\n"], false), whole(&["abcd"]));
        assert_eq!(split(4, &[b"abc", b"d\r", b"\n"], false), whole(&["abcd"]));
        assert_eq!(split(4, &[b"abcd", b"\r\n"], false), whole(&["abcd"]));
        assert_eq!(split(4, &[b"abc", b"de", b"\n"], false), vec![("abcd".into(), true)]);
    }

    #[test]
    fn flush_ends_skipping() {
        let mut s = LineSplitter::new(2);
        let mut out = Vec::new();
        s.feed(b"abcdef", &mut |l| out.push(l.bytes.to_vec()));
        s.flush(&mut |l| out.push(l.bytes.to_vec()));
        s.feed(b"x\n", &mut |l| out.push(l.bytes.to_vec()));
        assert_eq!(out, vec![b"ab".to_vec(), b"x".to_vec()]);
    }
}
