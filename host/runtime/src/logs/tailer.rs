//! Following one file path like `tail -F`: owns the open handle, the read offset, and detecting rotation (the path
//! now names another file: the old one is read to its end first) and truncation (the file shrank below the offset:
//! read again from 0). Blocking `std::fs` I/O, bounded by a byte budget per poll: call it from a blocking thread,
//! never from an async task. It knows nothing of globs or rules.

use std::fs::{File, Metadata};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::lines::{Line, LineSink, LineSplitter};

/// Size of one read.
const CHUNK: usize = 64 << 10;

/// Identity of a file (not of its path): device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(meta: &Metadata) -> FileId {
        FileId { dev: meta.dev(), ino: meta.ino() }
    }
}

/// Where to start reading the file found at the first poll. A file that appears later is always read from its
/// start (it is new).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    Start,
    End,
    /// At `offset`, if the path still names file `id` (a file another tailer followed under an older name);
    /// otherwise from the start.
    Resume {
        id: FileId,
        offset: u64,
    },
}

#[derive(Debug)]
struct Open {
    file: File,
    id: FileId,
    offset: u64,
}

/// Follows one path.
#[derive(Debug)]
pub struct Tailer {
    path: PathBuf,
    start: Option<StartAt>,
    open: Option<Open>,
    splitter: LineSplitter,
    buf: Vec<u8>,
    /// The last problem logged, so a missing or unreadable file is reported once, not at every poll.
    reported: Option<ErrorKind>,
    /// Where the file rotated away was left, until the owner asks (it may reappear under another watched name).
    left: Option<(FileId, u64)>,
}

impl Tailer {
    /// Nothing is read until the first [`poll`](Tailer::poll).
    pub fn new(path: impl Into<PathBuf>, start: StartAt, max_line_bytes: usize) -> Tailer {
        Tailer {
            path: path.into(),
            start: Some(start),
            open: None,
            splitter: LineSplitter::new(max_line_bytes),
            buf: Vec::new(),
            reported: None,
            left: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines longer than `max` bytes are cut from now on (a reload); the read position is kept.
    pub fn set_max_line_bytes(&mut self, max: usize) {
        self.splitter.set_max(max);
    }

    /// The file being read and the offset reached in it, if one is open.
    pub fn position(&self) -> Option<(FileId, u64)> {
        self.open.as_ref().map(|o| (o.id, o.offset))
    }

    /// Reads what was appended since the last poll, up to about `budget` bytes, and emits every complete line.
    /// Returns `true` if the budget ran out (more may be waiting: poll again soon).
    pub fn poll(&mut self, budget: usize, emit: &mut impl LineSink) -> bool {
        let mut budget = budget;
        if self.open.is_none() && !self.open_path() {
            return false;
        }
        if !self.read_to_end(&mut budget, emit) {
            return true;
        }
        if self.truncated() {
            tracing::info!(path = %self.path.display(), "log file truncated, reading it again from the start");
            self.splitter.flush(&mut |line| emit.line(line));
            if let Some(open) = &mut self.open {
                open.offset = 0;
            }
            if !self.read_to_end(&mut budget, emit) {
                return true;
            }
        }
        if self.rotated() {
            // Lines written to the old file before the switch are read first; none are lost.
            if !self.read_to_end(&mut budget, emit) {
                return true;
            }
            self.splitter.flush(&mut |line| emit.line(line));
            self.left = self.open.take().map(|o| (o.id, o.offset));
            tracing::info!(path = %self.path.display(), "log file rotated, following the new file");
            self.start = Some(StartAt::Start);
            if self.open_path() && !self.read_to_end(&mut budget, emit) {
                return true;
            }
        }
        false
    }

    /// Leaves the file: emits its unfinished last line, if any, and returns where it stopped.
    pub fn close(&mut self, emit: &mut impl FnMut(Line<'_>)) -> Option<(FileId, u64)> {
        self.splitter.flush(emit);
        self.open.take().map(|o| (o.id, o.offset))
    }

    /// Where the last file rotated away from this path was left, once.
    pub(crate) fn take_left(&mut self) -> Option<(FileId, u64)> {
        self.left.take()
    }

    /// Opens the path if it names a regular file; `false` if it does not (yet).
    fn open_path(&mut self) -> bool {
        // The requested start applies to the file found at the first attempt only.
        let start = self.start.take().unwrap_or(StartAt::Start);
        let opened = File::open(&self.path).and_then(|file| {
            let meta = file.metadata()?;
            Ok((file, meta))
        });
        let (file, meta) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                self.report(e.kind(), &e.to_string());
                return false;
            }
        };
        if !meta.is_file() {
            self.report(ErrorKind::InvalidInput, "not a regular file");
            return false;
        }
        let id = FileId::of(&meta);
        let offset = match start {
            StartAt::Start => 0,
            StartAt::End => meta.len(),
            StartAt::Resume { id: was, offset } if was == id && offset <= meta.len() => offset,
            StartAt::Resume { .. } => 0,
        };
        if self.reported.take().is_some() {
            tracing::info!(path = %self.path.display(), "log file found");
        }
        tracing::debug!(path = %self.path.display(), offset, "following log file");
        self.open = Some(Open { file, id, offset });
        true
    }

    /// Reads the open file to its current end. `false` if the budget ran out first.
    fn read_to_end(&mut self, budget: &mut usize, emit: &mut impl LineSink) -> bool {
        let Some(open) = &mut self.open else { return true };
        if self.buf.is_empty() {
            self.buf = vec![0; CHUNK];
        }
        loop {
            if *budget == 0 {
                return false;
            }
            let want = self.buf.len().min(*budget);
            match open.file.read_at(&mut self.buf[..want], open.offset) {
                Ok(0) => return true,
                Ok(n) => {
                    open.offset += n as u64;
                    *budget -= n;
                    self.splitter.feed_runs(&self.buf[..n], emit);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let (kind, text) = (e.kind(), e.to_string());
                    self.report(kind, &text);
                    return true;
                }
            }
        }
    }

    /// The open file is now shorter than what was read of it.
    fn truncated(&self) -> bool {
        self.open.as_ref().is_some_and(|o| o.file.metadata().is_ok_and(|m| m.len() < o.offset))
    }

    /// The path now names another file. A path that names nothing (renamed away, not re-created yet) is no
    /// rotation yet: the old file may still be written to.
    fn rotated(&self) -> bool {
        let Some(open) = &self.open else { return false };
        std::fs::metadata(&self.path).is_ok_and(|m| FileId::of(&m) != open.id)
    }

    fn report(&mut self, kind: ErrorKind, text: &str) {
        if self.reported == Some(kind) {
            return;
        }
        self.reported = Some(kind);
        if kind == ErrorKind::NotFound {
            tracing::info!(path = %self.path.display(), "log file does not exist yet, waiting for it");
        } else {
            tracing::warn!(path = %self.path.display(), "cannot read log file: {text}");
        }
    }
}
