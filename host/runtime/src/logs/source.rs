//! One configured log file as a set of [`Tailer`]s: a plain path is one tailer for the task's whole life; a glob is
//! re-expanded at every poll, a tailer per matching file. Owns the glob bookkeeping, including a file renamed from
//! one matching name to another (a rotation to `app.log.1` under `app.log*`), which carries on from where it was
//! instead of being read again. Blocking I/O, like the tailers.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;

use super::lines::{AtPath, FileSink};
use super::tailer::{FileId, StartAt, Tailer};

/// Files left by a glob's tailers, remembered in case they reappear under another matching name.
const RETIRED_KEPT: usize = 64;

/// Whether `path` has glob metacharacters.
pub(crate) fn is_glob(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

#[derive(Debug)]
pub(crate) enum Source {
    Path(Tailer),
    Glob(Glob),
}

#[derive(Debug)]
pub(crate) struct Glob {
    pattern: String,
    /// For the files matching at the first expansion; later ones are read from their start.
    start: Option<StartAt>,
    max_line_bytes: usize,
    tailers: BTreeMap<PathBuf, Tailer>,
    /// Where dropped tailers stopped, newest last.
    retired: VecDeque<(FileId, u64)>,
    reported_empty: bool,
}

impl Source {
    pub(crate) fn new(path: &str, start: StartAt, max_line_bytes: usize) -> Source {
        if is_glob(path) {
            match glob::Pattern::new(path) {
                Ok(_) => {
                    return Source::Glob(Glob {
                        pattern: path.to_owned(),
                        start: Some(start),
                        max_line_bytes,
                        tailers: BTreeMap::new(),
                        retired: VecDeque::new(),
                        reported_empty: false,
                    });
                }
                Err(e) => tracing::warn!(path, "invalid glob, following it as a plain path: {e}"),
            }
        }
        Source::Path(Tailer::new(path, start, max_line_bytes))
    }

    /// Lines longer than `max` bytes are cut from now on, in the files followed and in those found later.
    pub(crate) fn set_max_line_bytes(&mut self, max: usize) {
        match self {
            Source::Path(t) => t.set_max_line_bytes(max),
            Source::Glob(g) => {
                g.max_line_bytes = max;
                g.tailers.values_mut().for_each(|t| t.set_max_line_bytes(max));
            }
        }
    }

    /// Polls every file once; `true` if one of them ran out of budget.
    pub(crate) fn poll(&mut self, budget: usize, emit: &mut impl FileSink) -> bool {
        match self {
            Source::Path(t) => {
                let path = t.path().to_owned();
                t.poll(budget, &mut AtPath { path: &path, sink: emit })
            }
            Source::Glob(g) => g.poll(budget, emit),
        }
    }
}

impl Glob {
    fn poll(&mut self, budget: usize, emit: &mut impl FileSink) -> bool {
        // Existing tailers first, so a rotation they can see is handled before new names are considered.
        let mut pending = false;
        for (path, t) in &mut self.tailers {
            pending |= t.poll(budget, &mut AtPath { path, sink: emit });
            if let Some(left) = t.take_left() {
                Self::remember(&mut self.retired, left);
            }
        }

        let matched: BTreeSet<PathBuf> = match glob::glob(&self.pattern) {
            Ok(paths) => paths.filter_map(Result::ok).filter(|p| p.is_file()).collect(),
            Err(_) => BTreeSet::new(),
        };
        if matched.is_empty() && !self.reported_empty {
            tracing::info!(path = %self.pattern, "no log file matches yet, waiting for one");
        }
        self.reported_empty = matched.is_empty();

        let gone: Vec<PathBuf> = self.tailers.keys().filter(|p| !matched.contains(*p)).cloned().collect();
        for path in gone {
            if let Some(mut t) = self.tailers.remove(&path)
                && let Some(stopped) = t.close(&mut |line| emit.line(&path, line))
            {
                Self::remember(&mut self.retired, stopped);
            }
        }

        let first = self.start.take();
        for path in matched {
            if self.tailers.contains_key(&path) {
                continue;
            }
            let Ok(id) = std::fs::metadata(&path).map(|m| FileId::of(&m)) else { continue };
            // Another tailer still reads this file under its old name: wait until it lets go.
            if self.tailers.values().any(|t| t.position().is_some_and(|(followed, _)| followed == id)) {
                continue;
            }
            let start = match self.retired.iter().position(|(was, _)| *was == id) {
                Some(i) => self.retired.remove(i).map_or(StartAt::Start, |(id, offset)| StartAt::Resume { id, offset }),
                None => first.unwrap_or(StartAt::Start),
            };
            tracing::info!(path = %path.display(), glob = %self.pattern, "following log file");
            let mut t = Tailer::new(path.clone(), start, self.max_line_bytes);
            pending |= t.poll(budget, &mut AtPath { path: &path, sink: emit });
            self.tailers.insert(path, t);
        }
        pending
    }

    fn remember(retired: &mut VecDeque<(FileId, u64)>, stopped: (FileId, u64)) {
        if retired.len() == RETIRED_KEPT {
            retired.pop_front();
        }
        retired.push_back(stopped);
    }
}
