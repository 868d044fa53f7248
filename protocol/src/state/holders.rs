//! Who holds which document: the book a node keeps so that a change goes to the peers
//! that hold the document, and to no one else.
//!
//! A change is announced by syncing with the document's holders (never on a topic
//! every peer hears), and a holder that learned something new passes it on to its own
//! holders, so a write costs each holder at most [`Config::per_doc`] sessions whatever
//! the size of the network. The book learns a holder from a sync: a peer that answered
//! ours with a message or "done", or that sent one about a document we hold, holds
//! it; one that answered "not hosted", or could not be reached, is forgotten.
//!
//! Bounded on both axes: at most [`Config::per_doc`] holders per document (the most
//! recently heard first; the one heard from longest ago makes room) and at most
//! [`Config::max_docs`] documents (the one noted longest ago is forgotten whole).

use std::collections::HashMap;

use super::DocName;

/// The caps of a [`Holders`] book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Most holders remembered per document.
    pub per_doc: usize,
    /// Most documents whose holders are remembered.
    pub max_docs: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            per_doc: 8,
            max_docs: 4096,
        }
    }
}

/// Holders of documents, per document, most recently heard first.
#[derive(Debug, Clone)]
pub struct Holders<P> {
    config: Config,
    docs: HashMap<DocName, Entry<P>>,
    /// Increases with every note; a document's last one orders eviction.
    tick: u64,
}

#[derive(Debug, Clone)]
struct Entry<P> {
    peers: Vec<P>,
    touched: u64,
}

impl<P: Copy + Eq> Holders<P> {
    /// An empty book with these caps (each at least 1).
    pub fn new(config: Config) -> Self {
        Self {
            config: Config {
                per_doc: config.per_doc.max(1),
                max_docs: config.max_docs.max(1),
            },
            docs: HashMap::new(),
            tick: 0,
        }
    }

    /// `peer` holds `doc` (it synced it with us just now). It goes first; past the
    /// per-document cap the holder heard from longest ago is dropped, and past the
    /// document cap the document noted longest ago is forgotten.
    pub fn note(&mut self, doc: &DocName, peer: P) {
        self.tick += 1;
        let tick = self.tick;
        // A scan of at most `max_docs` entries, only when a new document arrives at
        // the cap.
        if !self.docs.contains_key(doc)
            && self.docs.len() >= self.config.max_docs
            && let Some(oldest) = self
                .docs
                .iter()
                .min_by_key(|(_, e)| e.touched)
                .map(|(d, _)| d.clone())
        {
            self.docs.remove(&oldest);
        }
        let entry = self.docs.entry(doc.clone()).or_insert_with(|| Entry {
            peers: Vec::new(),
            touched: tick,
        });
        entry.touched = tick;
        entry.peers.retain(|p| *p != peer);
        entry.peers.insert(0, peer);
        entry.peers.truncate(self.config.per_doc);
    }

    /// `peer` does not hold `doc` (it answered "not hosted", or left for good).
    pub fn forget(&mut self, doc: &DocName, peer: P) {
        if let Some(entry) = self.docs.get_mut(doc) {
            entry.peers.retain(|p| *p != peer);
            if entry.peers.is_empty() {
                self.docs.remove(doc);
            }
        }
    }

    /// The holders of `doc`, most recently heard first.
    pub fn of(&self, doc: &DocName) -> &[P] {
        self.docs.get(doc).map_or(&[], |e| e.peers.as_slice())
    }

    /// Whom a change to `doc` goes to: its holders, except `from` (the peer the
    /// change came from, which has it).
    pub fn targets(&self, doc: &DocName, from: Option<P>) -> Vec<P> {
        self.of(doc)
            .iter()
            .copied()
            .filter(|p| Some(*p) != from)
            .collect()
    }

    /// Documents with at least one holder remembered.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether no holder of any document is remembered.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str) -> DocName {
        format!("{}/{name}", "ab".repeat(32))
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_most_recent_holder_goes_first_and_the_cap_drops_the_oldest() {
        let mut book = Holders::new(Config {
            per_doc: 3,
            max_docs: 10,
        });
        let d = doc("cart");
        for p in 1..=4u32 {
            book.note(&d, p);
        }
        assert_eq!(book.of(&d), &[4, 3, 2]);
        book.note(&d, 2);
        assert_eq!(book.of(&d), &[2, 4, 3]);
        assert_eq!(book.targets(&d, Some(4)), vec![2, 3]);
        assert_eq!(book.targets(&d, None), vec![2, 4, 3]);
    }

    #[test]
    fn a_peer_that_does_not_host_is_forgotten_and_so_is_an_empty_document() {
        let mut book = Holders::new(Config::default());
        let d = doc("cart");
        book.note(&d, 1u32);
        book.note(&d, 2);
        book.forget(&d, 1);
        assert_eq!(book.of(&d), &[2]);
        book.forget(&d, 2);
        assert!(book.of(&d).is_empty());
        assert!(book.is_empty());
        book.forget(&doc("never"), 9);
        assert!(book.is_empty());
    }

    #[test]
    fn past_the_document_cap_the_one_noted_longest_ago_is_forgotten() {
        let mut book = Holders::new(Config {
            per_doc: 2,
            max_docs: 3,
        });
        let docs: Vec<DocName> = (0..5).map(|i| doc(&format!("d{i}"))).collect();
        for d in &docs[..3] {
            book.note(d, 1u32);
        }
        // d0 is heard from again, so d1 is now the oldest.
        book.note(&docs[0], 2);
        book.note(&docs[3], 1);
        assert_eq!(book.len(), 3);
        assert!(book.of(&docs[1]).is_empty());
        assert_eq!(book.of(&docs[0]), &[2, 1]);
        book.note(&docs[4], 1);
        assert!(book.of(&docs[2]).is_empty());
        assert_eq!(book.len(), 3);
    }
}
