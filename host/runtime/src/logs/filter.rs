//! The whole-buffer prefilter of the built-in patterns (ripgrep's approach): one regex searched over a run of
//! complete lines as they lie in the read buffer, so that the rules run only on the few lines it points at instead
//! of on every line. Owns the rewriting that makes the search sound; it decides no match itself (the line is then
//! matched by the [`RuleSet`](super::RuleSet) exactly as before) and knows nothing of files.
//!
//! Soundness: every line a pattern matches on its own must hold a match of the filter inside its span in the
//! buffer. A line's text never holds `\n` and is the buffer's bytes minus an optional trailing `\r`, so each
//! pattern is rewritten:
//! - `\n` is removed from every class and a literal holding `\n` can never match: no filter match crosses a line,
//!   and none of the line's own matches needed it;
//! - `\A` becomes "start of a line" and `\z` / `(?m)$` become "before `\r` or `\n`" (CRLF mode), which hold at the
//!   line's ends in the buffer whether or not the line ended in `\r\n`;
//! - word boundaries need nothing: `\r`, `\n` and the buffer's ends are non-word, like the ends of a line's text.
//!
//! The search runs over a copy of the buffer with ASCII letters lowered ([`LineFilter::fold`]), and each pattern is
//! lowered to match: every `A`-`Z` in a literal becomes its lower case, a class gains the lower case of the capitals
//! it holds and loses the capitals (none are left in the text). A character a pattern matched is then matched by the
//! lowered pattern in the lowered text, letters stay word characters, and `(?i)` patterns lose their case variants:
//! their literals become few and long enough for a fast multi-literal prefilter (Teddy) to skip most of the text,
//! which their `O`/`o` classes defeated (4 times faster on the `logscan` bench).
//!
//! The filter may point at lines that do not match (an inner `\r`, say); the exact match is the rules'. It is only
//! sound on text that is valid UTF-8 (a line's invalid bytes become U+FFFD, which patterns can match) and on lines
//! kept whole (a cut line's end is not where the buffer's line ends): the caller checks both.

use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind};
use regex_syntax::hir::{
    Capture, Class, ClassBytes, ClassBytesRange, ClassUnicode, ClassUnicodeRange, Hir, HirKind, Look, Repetition,
};

/// The built-in patterns as one regex that cannot match across a line end.
#[derive(Clone, Debug)]
pub(super) struct LineFilter {
    regex: Regex,
}

impl LineFilter {
    /// `None` if a pattern does not parse or the filter does not compile (the size limit): lines are then matched
    /// one by one.
    pub(super) fn new<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Option<LineFilter> {
        let hirs =
            patterns.into_iter().map(|p| syntax::parse(p).ok().map(|h| rewrite(&h))).collect::<Option<Vec<_>>>()?;
        if hirs.is_empty() {
            return None;
        }
        // One alternation searched leftmost-first: an all-matches set keeps every case variant of `(?i)` literals
        // in its prefilter, which fires constantly on ordinary text.
        let regex = Regex::builder()
            .configure(Regex::config().match_kind(MatchKind::LeftmostFirst))
            .build_from_hir(&Hir::alternation(hirs))
            .ok()?;
        Some(LineFilter { regex })
    }

    /// The text the filter searches: `run` with ASCII letters lowered (same length, same line ends).
    pub(super) fn fold(run: &[u8]) -> Vec<u8> {
        run.to_ascii_lowercase()
    }

    /// Where the first line of `folded[from..]` that may match ends: the index of its `\n`. `folded` is complete
    /// lines (it ends with `\n`) through [`fold`](LineFilter::fold), and `from` a line start.
    pub(super) fn next_line_end(&self, folded: &[u8], from: usize) -> Option<usize> {
        // The earliest match end lies in the first line holding a match, since no match crosses a line end.
        let end = self.regex.search_half(&Input::new(folded).range(from..).earliest(true))?.offset();
        memchr::memchr(b'\n', &folded[end..]).map(|i| end + i)
    }
}

/// `hir` without `\n`, with line anchors for its text anchors, lowered (see the module doc).
fn rewrite(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(lit) if lit.0.contains(&b'\n') => Hir::fail(),
        HirKind::Literal(lit) => Hir::literal(lit.0.to_ascii_lowercase()),
        HirKind::Class(Class::Unicode(class)) => {
            let lowered = class.ranges().iter().filter_map(|r| {
                let (start, end) = (r.start().max('A'), r.end().min('Z'));
                (start <= end).then(|| ClassUnicodeRange::new(start.to_ascii_lowercase(), end.to_ascii_lowercase()))
            });
            let mut class = class.clone();
            class.union(&ClassUnicode::new(lowered));
            class
                .difference(&ClassUnicode::new([ClassUnicodeRange::new('\n', '\n'), ClassUnicodeRange::new('A', 'Z')]));
            Hir::class(Class::Unicode(class))
        }
        HirKind::Class(Class::Bytes(class)) => {
            let lowered = class.ranges().iter().filter_map(|r| {
                let (start, end) = (r.start().max(b'A'), r.end().min(b'Z'));
                (start <= end).then(|| ClassBytesRange::new(start.to_ascii_lowercase(), end.to_ascii_lowercase()))
            });
            let mut class = class.clone();
            class.union(&ClassBytes::new(lowered));
            class.difference(&ClassBytes::new([ClassBytesRange::new(b'\n', b'\n'), ClassBytesRange::new(b'A', b'Z')]));
            Hir::class(Class::Bytes(class))
        }
        HirKind::Look(look) => Hir::look(match look {
            Look::Start => Look::StartLF,
            Look::End | Look::EndLF => Look::EndCRLF,
            other => *other,
        }),
        HirKind::Repetition(rep) => Hir::repetition(Repetition { sub: Box::new(rewrite(&rep.sub)), ..rep.clone() }),
        HirKind::Capture(Capture { sub, .. }) => rewrite(sub),
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(rewrite).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(rewrite).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line ends (`\n` indexes) the filter points at, in order.
    fn hits(patterns: &[&str], run: &str) -> Vec<usize> {
        let filter = LineFilter::new(patterns.iter().copied()).unwrap();
        let folded = LineFilter::fold(run.as_bytes());
        let mut out = Vec::new();
        let mut from = 0;
        while let Some(end) = filter.next_line_end(&folded, from) {
            out.push(end);
            from = end + 1;
        }
        out
    }

    #[test]
    fn no_match_crosses_a_line_end() {
        // `[^']*` would run from the first line's quote to the second's.
        assert_eq!(hits(&["thread '[^']*' panicked"], "thread 'a\nb' panicked\n"), Vec::<usize>::new());
        assert_eq!(hits(&[r"a\sb", "x\ny"], "a\nb\nx\ny\n"), Vec::<usize>::new());
        assert_eq!(hits(&["(?s)a.b"], "a\nb\naxb\n"), [7]);
    }

    #[test]
    fn text_anchors_hold_at_every_line_end_with_or_without_cr() {
        assert_eq!(hits(&["^b"], "ab\nb\n"), [4]);
        assert_eq!(hits(&["a$"], "ba\r\nab\nxa\n"), [3, 9]);
        assert_eq!(hits(&[r"\Aa\z"], "a\r\nba\na\n"), [2, 7]);
        assert_eq!(hits(&["^$"], "x\n\r\n\ny\n"), [3, 4]);
        assert_eq!(hits(&[r"\bend\b"], "end\r\nsend\nend\n"), [4, 13]);
    }

    #[test]
    fn lowered_patterns_find_every_case() {
        assert_eq!(hits(&["(?i)out of memory", "FATAL"], "OUT OF MEMORY\nfatal\nFATAL\nok\n"), [13, 19, 25]);
        // Lowering makes a superset: `[^A-Z]` now passes `A` (lowered) and `[^a]` passes `a` (it held `A`).
        assert_eq!(hits(&["[^A-Z]x", "[A-C]y", r"\bOK\b"], "Ax\nby\nzy\nok\n"), [2, 5, 11]);
        assert_eq!(hits(&["[^a]b"], "Ab\nab\n"), [2, 5]);
        // Unicode case folding survives: `(?i)k` matches the Kelvin sign.
        assert_eq!(hits(&["(?i)kill"], "\u{212A}ILL\n"), [6]);
    }

    #[test]
    fn unparsable_or_no_patterns_give_no_filter() {
        assert!(LineFilter::new(["(unclosed"]).is_none());
        assert!(LineFilter::new([]).is_none());
    }
}
