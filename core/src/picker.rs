//! The piece picker: which run of pieces each source of one file fetches next. Pure: no
//! sockets, files or clocks, so it can be driven step by step in tests.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use crate::content::{piece_len, Bitfield};

/// Pieces asked for in one request: long enough to amortise a request, short enough that a
/// slow source holds little back.
pub const RUN_PIECES: u64 = 8;

pub type SourceId = usize;

/// Bytes of a file of `size` bytes in the pieces `have` holds.
pub fn verified_bytes(size: u64, have: &Bitfield) -> u64 {
    (0..have.len())
        .filter(|p| have.get(*p))
        .map(|p| piece_len(size, p))
        .sum()
}

/// What a source's worker should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    Run(Range<u64>),
    /// Nothing for this source right now; ask again when pieces or availability change.
    Wait,
    /// Nothing left for this source to do.
    Done,
}

#[derive(Debug, Clone, Default)]
struct SourceState {
    /// The pieces a partial source (a peer still downloading the file) holds; `None` for a
    /// source holding the whole file.
    pieces: Option<Bitfield>,
    ended: bool,
    bad: bool,
}

/// Which pieces are wanted, being fetched (and by whom), or done; which pieces each source
/// can supply; and which sources are bad.
#[derive(Debug, Clone)]
pub struct PiecePicker {
    have: Bitfield,
    in_flight: HashMap<u64, HashSet<SourceId>>,
    sources: Vec<SourceState>,
}

impl PiecePicker {
    pub fn new(have: Bitfield) -> Self {
        Self {
            have,
            in_flight: HashMap::new(),
            sources: Vec::new(),
        }
    }

    /// Adds a source holding the whole file (`None`) or only `pieces`; ids count from 0.
    pub fn add_source(&mut self, pieces: Option<Bitfield>) -> SourceId {
        let len = self.have.len();
        self.sources.push(SourceState {
            pieces: pieces.map(|p| {
                if p.len() == len {
                    p
                } else {
                    Bitfield::new(len)
                }
            }),
            ..SourceState::default()
        });
        self.sources.len() - 1
    }

    /// A partial source reported the pieces it holds now. A bitfield for another piece
    /// count is ignored, and a complete source stays complete.
    pub fn set_available(&mut self, source: SourceId, pieces: Bitfield) {
        if pieces.len() != self.have.len() {
            return;
        }
        if let Some(SourceState {
            pieces: Some(held), ..
        }) = self.sources.get_mut(source)
        {
            *held = pieces;
        }
    }

    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    pub fn complete(&self) -> bool {
        self.have.complete()
    }

    pub fn is_bad(&self, source: SourceId) -> bool {
        self.sources.get(source).is_none_or(|s| s.bad)
    }

    /// A partial source still worth asking for its availability.
    pub fn is_partial_and_active(&self, source: SourceId) -> bool {
        self.sources
            .get(source)
            .is_some_and(|s| s.pieces.is_some() && !s.ended && !s.bad)
    }

    fn holds(&self, source: SourceId, piece: u64) -> bool {
        self.sources
            .get(source)
            .is_some_and(|s| s.pieces.as_ref().is_none_or(|held| held.get(piece)))
    }

    /// A source holding the whole file is still at work, so a partial source with nothing
    /// to give yet may get more: waiting for it is bounded by that source.
    fn complete_source_active(&self) -> bool {
        self.sources
            .iter()
            .any(|s| s.pieces.is_none() && !s.ended && !s.bad)
    }

    /// The next step for `source`: a run of missing pieces it holds, to fetch; wait; or done.
    pub fn pick(&mut self, source: SourceId, max: u64) -> Pick {
        if self.complete() || self.is_bad(source) {
            return Pick::Done;
        }
        if let Some(run) = self.next_run(source, max) {
            return Pick::Run(run);
        }
        let partial = self.sources.get(source).is_some_and(|s| s.pieces.is_some());
        if partial && !self.complete_source_active() {
            return Pick::Done;
        }
        Pick::Wait
    }

    /// The first missing pieces `source` holds that nobody is fetching, up to `max` in a
    /// row. When every such piece is already being fetched (endgame), a piece held by
    /// another source is duplicated, so a stalled source cannot hold the file back.
    fn next_run(&mut self, source: SourceId, max: u64) -> Option<Range<u64>> {
        let free = self
            .have
            .missing()
            .find(|p| !self.in_flight.contains_key(p) && self.holds(source, *p));
        let run = match free {
            Some(first) => {
                let mut end = first + 1;
                while end < self.have.len()
                    && end - first < max
                    && !self.have.get(end)
                    && !self.in_flight.contains_key(&end)
                    && self.holds(source, end)
                {
                    end += 1;
                }
                first..end
            }
            None => {
                let stolen = self.have.missing().find(|p| {
                    self.holds(source, *p)
                        && self.in_flight.get(p).is_some_and(|s| !s.contains(&source))
                })?;
                stolen..stolen + 1
            }
        };
        for p in run.clone() {
            self.in_flight.entry(p).or_default().insert(source);
        }
        Some(run)
    }

    /// A verified piece arrived. Returns false if another source had already delivered it.
    pub fn completed(&mut self, piece: u64) -> bool {
        self.in_flight.remove(&piece);
        let new = !self.have.get(piece);
        self.have.set(piece);
        new
    }

    /// `source` will not deliver these pieces after all.
    pub fn abandon(&mut self, source: SourceId, pieces: Range<u64>) {
        for p in pieces {
            if let Some(holders) = self.in_flight.get_mut(&p) {
                holders.remove(&source);
                if holders.is_empty() {
                    self.in_flight.remove(&p);
                }
            }
        }
    }

    /// `source`'s worker has stopped: partial sources waiting on it may stop too.
    pub fn ended(&mut self, source: SourceId) {
        if let Some(s) = self.sources.get_mut(source) {
            s.ended = true;
        }
    }

    /// `source` served bytes that do not match the list: it is dropped for this file.
    pub fn mark_bad(&mut self, source: SourceId) {
        if let Some(s) = self.sources.get_mut(source) {
            s.bad = true;
        }
        let held: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, s)| s.contains(&source))
            .map(|(p, _)| *p)
            .collect();
        for p in held {
            self.abandon(source, p..p + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A picker for `len` pieces with `complete` sources holding the whole file.
    fn picker(len: u64, complete: usize) -> PiecePicker {
        let mut p = PiecePicker::new(Bitfield::new(len));
        for _ in 0..complete {
            p.add_source(None);
        }
        p
    }

    #[test]
    fn sources_get_disjoint_runs_in_order() {
        let mut p = picker(20, 3);
        assert_eq!(p.pick(0, 8), Pick::Run(0..8));
        assert_eq!(p.pick(1, 8), Pick::Run(8..16));
        assert_eq!(p.pick(2, 8), Pick::Run(16..20));
        for piece in 0..8 {
            assert!(p.completed(piece));
        }
        p.abandon(0, 0..8);
        // Endgame: nothing free, so source 0 duplicates the first piece someone else holds.
        assert_eq!(p.pick(0, 8), Pick::Run(8..9));
        assert!(p.completed(8));
        assert!(!p.completed(8), "a duplicate delivery is not counted twice");
    }

    #[test]
    fn a_bad_source_loses_its_pieces_and_gets_no_more() {
        let mut p = picker(4, 2);
        assert_eq!(p.pick(0, 2), Pick::Run(0..2));
        p.mark_bad(0);
        assert_eq!(p.pick(0, 2), Pick::Done);
        assert_eq!(p.pick(1, 8), Pick::Run(0..4));
        assert_eq!(p.pick(7, 8), Pick::Done, "an unknown source gets nothing");
    }

    #[test]
    fn runs_skip_pieces_already_held() {
        let mut p = PiecePicker::new(Bitfield::with_pieces(6, [1, 3]));
        p.add_source(None);
        p.add_source(None);
        assert_eq!(p.pick(0, 8), Pick::Run(0..1));
        assert_eq!(p.pick(0, 8), Pick::Run(2..3));
        assert_eq!(p.pick(1, 8), Pick::Run(4..6));
    }

    #[test]
    fn partial_sources_get_only_pieces_they_hold() {
        let mut p = picker(12, 1);
        let a = p.add_source(Some(Bitfield::with_pieces(12, [0, 1, 2, 5, 6])));
        let b = p.add_source(Some(Bitfield::with_pieces(12, [2, 3, 4, 9])));
        // Runs stop at the first piece the partial source lacks.
        assert_eq!(p.pick(a, 8), Pick::Run(0..3));
        assert_eq!(p.pick(b, 8), Pick::Run(3..5));
        assert_eq!(p.pick(a, 8), Pick::Run(5..7));
        assert_eq!(p.pick(b, 8), Pick::Run(9..10));
        assert_eq!(p.pick(0, 8), Pick::Run(7..9));
        assert_eq!(p.pick(0, 8), Pick::Run(10..12));
        // Everything is in flight. Endgame duplicates only what a source holds.
        p.completed(2);
        assert_eq!(p.pick(b, 8), Pick::Wait, "all b holds is done or its own");
        assert_eq!(
            p.pick(0, 8),
            Pick::Run(0..1),
            "the complete source duplicates"
        );
        p.abandon(b, 3..5);
        assert_eq!(p.pick(a, 8), Pick::Wait, "a lacks the pieces b gave back");
        assert_eq!(p.pick(b, 8), Pick::Run(3..5));
    }

    #[test]
    fn availability_updates_reach_the_partial_source() {
        let mut p = picker(4, 1);
        let a = p.add_source(Some(Bitfield::new(4)));
        assert_eq!(
            p.pick(a, 8),
            Pick::Wait,
            "nothing yet, a complete source is busy"
        );
        assert!(p.is_partial_and_active(a));
        assert!(!p.is_partial_and_active(0));
        p.set_available(a, Bitfield::with_pieces(4, [2, 3]));
        assert_eq!(p.pick(a, 8), Pick::Run(2..4));
        // A bitfield for another piece count is ignored; a complete source stays complete.
        p.set_available(a, Bitfield::with_pieces(5, [0, 1, 2, 3, 4]));
        p.set_available(0, Bitfield::new(4));
        assert_eq!(p.pick(a, 8), Pick::Wait);
        assert_eq!(p.pick(0, 8), Pick::Run(0..2));
        // A partial bitfield of the wrong length at the start counts as holding nothing.
        let c = p.add_source(Some(Bitfield::with_pieces(9, [0, 1])));
        assert!(p.is_partial_and_active(c));
        p.abandon(0, 0..2);
        assert_eq!(p.pick(c, 8), Pick::Wait);
    }

    #[test]
    fn a_partial_source_stops_waiting_once_no_complete_source_is_left() {
        let mut p = picker(4, 2);
        let a = p.add_source(Some(Bitfield::with_pieces(4, [0])));
        assert_eq!(p.pick(a, 8), Pick::Run(0..1));
        assert_eq!(p.pick(a, 8), Pick::Wait);
        p.ended(0);
        assert_eq!(p.pick(a, 8), Pick::Wait, "source 1 may still bring news");
        p.mark_bad(1);
        assert_eq!(p.pick(a, 8), Pick::Done);
        assert!(p.is_partial_and_active(a), "until its worker ends");
        p.ended(a);
        assert!(!p.is_partial_and_active(a));
        // A partial source that lies is dropped like any other.
        let mut p = picker(4, 1);
        let liar = p.add_source(Some(Bitfield::with_pieces(4, [0, 1, 2, 3])));
        assert_eq!(p.pick(liar, 8), Pick::Run(0..4));
        p.mark_bad(liar);
        assert_eq!(p.pick(liar, 8), Pick::Done);
        assert_eq!(p.pick(0, 8), Pick::Run(0..4));
    }

    #[test]
    fn verified_bytes_count_the_short_last_piece_by_its_length() {
        let size = 2 * crate::content::PIECE_SIZE + 10;
        assert_eq!(verified_bytes(size, &Bitfield::with_pieces(3, [])), 0);
        assert_eq!(
            verified_bytes(size, &Bitfield::with_pieces(3, [1])),
            crate::content::PIECE_SIZE
        );
        assert_eq!(
            verified_bytes(size, &Bitfield::with_pieces(3, [0, 2])),
            crate::content::PIECE_SIZE + 10
        );
    }
}
