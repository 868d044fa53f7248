//! `/kith/hood/1`: the neighbourhood's messages on the wire (`docs/wire-format.md`).
//!
//! One message per request; the answer is empty (an acknowledgement). Peers are named
//! by their raw id bytes and carry a few addresses as raw bytes: this crate knows no
//! libp2p, the node encodes and parses them.

/// The protocol name.
pub const PROTOCOL: &str = "/kith/hood/1";
/// Largest peer id, bytes (an ed25519 libp2p id is 38).
pub const MAX_PEER_ID: usize = 64;
/// Largest address, bytes.
pub const MAX_ADDR: usize = 128;
/// Most addresses given for one peer.
pub const MAX_ADDRS: usize = 4;
/// Most peers in one [`Frame::Peers`] (the neighbourhood's `share`).
pub const MAX_PEERS: usize = 16;
/// Most peers in one [`Frame::Warm`] (`crate::warm::Config::max_answer`).
pub const MAX_WARM: usize = 8;
/// Bytes of one peer record at most, encoded (in a [`Frame::Peers`], with its
/// capacity: a flag, a `u32` CPU score and a `u64` memory size).
const MAX_RECORD: usize = 2 + MAX_PEER_ID + MAX_ADDRS * (1 + MAX_ADDR) + CAPACITY_LEN;
/// Bytes of a capacity in a peer record, flag included.
const CAPACITY_LEN: usize = 1 + 4 + 8;
/// Bytes of one [`Frame::Warm`] entry beyond its record: the signed advert, the load
/// and the RTT.
const WARM_EXTRA: usize = crate::capacity::ENCODED_LEN + 2 + 2 + 2;
/// Largest frame, bytes: a full [`Frame::Peers`] (a full [`Frame::Warm`] is smaller).
pub const MAX_FRAME: usize = 2 + MAX_PEERS * MAX_RECORD;
const _: () = assert!(1 + 32 + 1 + MAX_WARM * (MAX_RECORD + WARM_EXTRA) <= MAX_FRAME);
/// Bytes of a [`Frame::Load`], tag included.
pub const LOAD_LEN: usize = 1 + 8 + 2 + 2;

const SUBSCRIBE: u8 = 1;
const ACCEPTED: u8 = 2;
const REFUSED: u8 = 3;
const UNSUBSCRIBE: u8 = 4;
const FULL: u8 = 5;
const LOAD: u8 = 6;
const ASK_PEERS: u8 = 7;
/// The first form of [`Frame::Peers`], without capacities: still read.
const PEERS_WITHOUT_CAPACITY: u8 = 8;
const FIND_WARM: u8 = 9;
const WARM: u8 = 10;
const PEERS: u8 = 11;

/// A peer named in a [`Frame::Peers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    /// Its id, raw bytes.
    pub id: Vec<u8>,
    /// Up to [`MAX_ADDRS`] addresses, raw bytes.
    pub addrs: Vec<Vec<u8>>,
    /// In a [`Frame::Peers`]: its capacity as its advert told the sender (hearsay,
    /// for choosing whom to subscribe to; the peer's own advert replaces it). Not
    /// sent in a [`Frame::Warm`], whose records carry the whole advert.
    pub capacity: Option<super::Capacity>,
}

/// A peer named in a [`Frame::Warm`]: where it is, the whole advert the answerer
/// holds of it (signed by that peer: the asker verifies it), its load as last heard
/// (not signed: a hint) and the answerer's RTT to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmRecord {
    /// Who, and where.
    pub peer: PeerRecord,
    /// Its signed advert (`capacity::Advert`, encoded).
    pub advert: Vec<u8>,
    /// Calls running there, as last heard.
    pub running: u16,
    /// Calls queued there, as last heard.
    pub queued: u16,
    /// The answerer's measured RTT to it, tenths of a millisecond (saturating).
    pub rtt_tenths_ms: u16,
}

/// One neighbourhood message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Send me your adverts.
    Subscribe,
    /// Subscription accepted.
    Accepted,
    /// Subscriber list full.
    Refused,
    /// Stop sending me adverts.
    Unsubscribe,
    /// The whole signed advert (`capacity::Advert`, encoded).
    Full(Vec<u8>),
    /// Only the load changed: the advert held, with this sequence number and load.
    Load {
        /// The sender's next advert sequence number.
        seq: u64,
        /// Calls running now.
        running: u16,
        /// Calls queued now.
        queued: u16,
    },
    /// Tell me your nearest neighbours.
    AskPeers,
    /// Some of my nearest neighbours.
    Peers(Vec<PeerRecord>),
    /// Which of your neighbours have this function warm?
    FindWarm([u8; 32]),
    /// Those of my neighbours with this function warm, nearest first, with the
    /// adverts I hold of them.
    Warm([u8; 32], Vec<WarmRecord>),
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Empty, or cut short.
    #[error("neighbourhood message is truncated")]
    Truncated,
    /// Longer than [`MAX_FRAME`].
    #[error("neighbourhood message is {0} bytes; at most {MAX_FRAME}")]
    TooLong(usize),
    /// An unknown message tag.
    #[error("unknown neighbourhood message tag {0}")]
    Tag(u8),
    /// Bytes after the message.
    #[error("{0} bytes after the neighbourhood message")]
    Trailing(usize),
    /// A list or field over its cap.
    #[error("{what} is {len}; at most {max}")]
    Limit {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
}

impl Frame {
    /// Whether it carries the advert ([`Frame::Full`], [`Frame::Load`]); byte counts
    /// tell adverts from the rest.
    pub fn is_advert(&self) -> bool {
        matches!(self, Self::Full(_) | Self::Load { .. })
    }

    /// Whether encoded `bytes` carry an advert, read from the tag alone (to count
    /// bytes of a message that may not parse).
    pub fn carries_advert(bytes: &[u8]) -> bool {
        matches!(bytes.first(), Some(&FULL | &LOAD))
    }

    /// The bytes on the wire. Lists beyond their caps are cut.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Subscribe => vec![SUBSCRIBE],
            Self::Accepted => vec![ACCEPTED],
            Self::Refused => vec![REFUSED],
            Self::Unsubscribe => vec![UNSUBSCRIBE],
            Self::AskPeers => vec![ASK_PEERS],
            Self::Full(advert) => {
                let mut b = Vec::with_capacity(1 + advert.len());
                b.push(FULL);
                b.extend_from_slice(advert);
                b
            }
            Self::Load {
                seq,
                running,
                queued,
            } => {
                let mut b = Vec::with_capacity(LOAD_LEN);
                b.push(LOAD);
                b.extend_from_slice(&seq.to_le_bytes());
                b.extend_from_slice(&running.to_le_bytes());
                b.extend_from_slice(&queued.to_le_bytes());
                b
            }
            Self::Peers(peers) => {
                let peers: Vec<&PeerRecord> =
                    peers.iter().filter(|p| p.fits()).take(MAX_PEERS).collect();
                let mut b = vec![PEERS, peers.len() as u8];
                for p in peers {
                    p.encode_into(&mut b);
                    p.encode_capacity(&mut b);
                }
                b
            }
            Self::FindWarm(f) => {
                let mut b = vec![FIND_WARM];
                b.extend_from_slice(f);
                b
            }
            Self::Warm(f, peers) => {
                let peers: Vec<&WarmRecord> = peers
                    .iter()
                    .filter(|w| w.peer.fits() && w.advert.len() == crate::capacity::ENCODED_LEN)
                    .take(MAX_WARM)
                    .collect();
                let mut b = vec![WARM];
                b.extend_from_slice(f);
                b.push(peers.len() as u8);
                for w in peers {
                    w.peer.encode_into(&mut b);
                    b.extend_from_slice(&w.advert);
                    b.extend_from_slice(&w.running.to_le_bytes());
                    b.extend_from_slice(&w.queued.to_le_bytes());
                    b.extend_from_slice(&w.rtt_tenths_ms.to_le_bytes());
                }
                b
            }
        }
    }

    /// Parses a frame. A full advert's bytes are returned as they came: the caller
    /// decodes and verifies them.
    ///
    /// # Errors
    /// See [`FrameError`]: truncated, too long, unknown tag, trailing bytes, a list or
    /// field over its cap.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        if bytes.len() > MAX_FRAME {
            return Err(FrameError::TooLong(bytes.len()));
        }
        let (&tag, rest) = bytes.split_first().ok_or(FrameError::Truncated)?;
        let mut r = Bytes(rest);
        let frame = match tag {
            SUBSCRIBE => Self::Subscribe,
            ACCEPTED => Self::Accepted,
            REFUSED => Self::Refused,
            UNSUBSCRIBE => Self::Unsubscribe,
            ASK_PEERS => Self::AskPeers,
            FULL => return Ok(Self::Full(rest.to_vec())),
            LOAD => Self::Load {
                seq: u64::from_le_bytes(r.array()?),
                running: u16::from_le_bytes(r.array()?),
                queued: u16::from_le_bytes(r.array()?),
            },
            PEERS | PEERS_WITHOUT_CAPACITY => {
                let n = usize::from(r.u8()?);
                limit("peers", n, MAX_PEERS)?;
                let mut peers = Vec::with_capacity(n);
                for _ in 0..n {
                    let mut p = PeerRecord::decode(&mut r)?;
                    if tag == PEERS {
                        p.capacity = decode_capacity(&mut r)?;
                    }
                    peers.push(p);
                }
                Self::Peers(peers)
            }
            FIND_WARM => Self::FindWarm(r.array()?),
            WARM => {
                let f = r.array()?;
                let n = usize::from(r.u8()?);
                limit("warm peers", n, MAX_WARM)?;
                let mut peers = Vec::with_capacity(n);
                for _ in 0..n {
                    peers.push(WarmRecord {
                        peer: PeerRecord::decode(&mut r)?,
                        advert: r.take(crate::capacity::ENCODED_LEN)?.to_vec(),
                        running: u16::from_le_bytes(r.array()?),
                        queued: u16::from_le_bytes(r.array()?),
                        rtt_tenths_ms: u16::from_le_bytes(r.array()?),
                    });
                }
                Self::Warm(f, peers)
            }
            other => return Err(FrameError::Tag(other)),
        };
        if !r.0.is_empty() {
            return Err(FrameError::Trailing(r.0.len()));
        }
        Ok(frame)
    }
}

impl PeerRecord {
    /// Whether its id can be encoded (addresses over their caps are left out).
    fn fits(&self) -> bool {
        !self.id.is_empty() && self.id.len() <= MAX_PEER_ID
    }

    fn encode_into(&self, b: &mut Vec<u8>) {
        b.push(self.id.len() as u8);
        b.extend_from_slice(&self.id);
        let addrs: Vec<&Vec<u8>> = self
            .addrs
            .iter()
            .filter(|a| !a.is_empty() && a.len() <= MAX_ADDR)
            .take(MAX_ADDRS)
            .collect();
        b.push(addrs.len() as u8);
        for a in addrs {
            b.push(a.len() as u8);
            b.extend_from_slice(a);
        }
    }

    fn decode(r: &mut Bytes<'_>) -> Result<Self, FrameError> {
        let len = usize::from(r.u8()?);
        limit("peer id length", len, MAX_PEER_ID)?;
        let id = r.take(len)?.to_vec();
        let count = usize::from(r.u8()?);
        limit("addresses of one peer", count, MAX_ADDRS)?;
        let mut addrs = Vec::with_capacity(count);
        for _ in 0..count {
            let len = usize::from(r.u8()?);
            limit("address length", len, MAX_ADDR)?;
            addrs.push(r.take(len)?.to_vec());
        }
        Ok(Self {
            id,
            addrs,
            capacity: None,
        })
    }

    fn encode_capacity(&self, b: &mut Vec<u8>) {
        match self.capacity {
            Some(c) => {
                b.push(1);
                b.extend_from_slice(&c.cpu_score.to_le_bytes());
                b.extend_from_slice(&c.memory_bytes.to_le_bytes());
            }
            None => b.push(0),
        }
    }
}

/// A capacity after a peer record: a flag (0 none, 1 some) and, with 1, the CPU
/// score and memory. A zero CPU score says nothing and reads as none.
fn decode_capacity(r: &mut Bytes<'_>) -> Result<Option<super::Capacity>, FrameError> {
    match r.u8()? {
        0 => Ok(None),
        1 => {
            let cpu_score = u32::from_le_bytes(r.array()?);
            let memory_bytes = u64::from_le_bytes(r.array()?);
            Ok((cpu_score > 0).then_some(super::Capacity {
                cpu_score,
                memory_bytes,
            }))
        }
        flag => Err(FrameError::Limit {
            what: "capacity flag",
            len: usize::from(flag),
            max: 1,
        }),
    }
}

fn limit(what: &'static str, len: usize, max: usize) -> Result<(), FrameError> {
    if len > max {
        return Err(FrameError::Limit { what, len, max });
    }
    Ok(())
}

struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_round_trips_and_bad_ones_name_what_is_wrong() {
        let peers = Frame::Peers(vec![
            PeerRecord {
                id: vec![7; 38],
                addrs: vec![vec![1, 2, 3], vec![4; 20]],
                capacity: Some(super::super::Capacity {
                    cpu_score: 4_000_000,
                    memory_bytes: 512 << 20,
                }),
            },
            PeerRecord {
                id: vec![8; 38],
                addrs: vec![vec![1, 2, 3]],
                capacity: None,
            },
        ]);
        for f in [
            Frame::Subscribe,
            Frame::Accepted,
            Frame::Refused,
            Frame::Unsubscribe,
            Frame::AskPeers,
            Frame::Full(vec![9; 452]),
            Frame::Load {
                seq: u64::MAX - 3,
                running: 2,
                queued: 7,
            },
            peers,
            Frame::FindWarm([3; 32]),
            Frame::Warm([3; 32], Vec::new()),
            Frame::Warm(
                [4; 32],
                vec![WarmRecord {
                    peer: PeerRecord {
                        id: vec![8; 38],
                        addrs: vec![vec![5; 12]],
                        capacity: None,
                    },
                    advert: vec![6; crate::capacity::ENCODED_LEN],
                    running: 1,
                    queued: 2,
                    rtt_tenths_ms: 123,
                }],
            ),
        ] {
            assert_eq!(Frame::decode(&f.encode()), Ok(f));
        }
        assert!(matches!(
            Frame::decode(&[WARM; 34]),
            Err(FrameError::Limit {
                what: "warm peers",
                ..
            })
        ));
        assert_eq!(Frame::decode(&[FIND_WARM, 1]), Err(FrameError::Truncated));
        assert_eq!(
            Frame::Load {
                seq: 1,
                running: 0,
                queued: 0
            }
            .encode()
            .len(),
            LOAD_LEN
        );
        assert_eq!(Frame::decode(&[]), Err(FrameError::Truncated));
        assert_eq!(Frame::decode(&[99]), Err(FrameError::Tag(99)));
        assert_eq!(Frame::decode(&[SUBSCRIBE, 0]), Err(FrameError::Trailing(1)));
        assert_eq!(Frame::decode(&[LOAD, 1, 2]), Err(FrameError::Truncated));
        assert!(matches!(
            Frame::decode(&[PEERS, 17]),
            Err(FrameError::Limit { what: "peers", .. })
        ));
        assert!(matches!(
            Frame::decode(&[PEERS, 1, 65]),
            Err(FrameError::Limit {
                what: "peer id length",
                ..
            })
        ));
        assert!(matches!(
            Frame::decode(&vec![PEERS; MAX_FRAME + 1]),
            Err(FrameError::TooLong(_))
        ));
        // A peer record with a capacity flag other than 0 or 1.
        assert!(matches!(
            Frame::decode(&[PEERS, 1, 1, 7, 0, 2]),
            Err(FrameError::Limit {
                what: "capacity flag",
                ..
            })
        ));
        // The first form, without capacities, still reads.
        assert_eq!(
            Frame::decode(&[PEERS_WITHOUT_CAPACITY, 1, 1, 7, 0]),
            Ok(Frame::Peers(vec![PeerRecord {
                id: vec![7],
                addrs: Vec::new(),
                capacity: None,
            }]))
        );
        // A zero CPU score says nothing.
        let mut zero = vec![PEERS, 1, 1, 7, 0, 1];
        zero.extend_from_slice(&[0; 12]);
        let Ok(Frame::Peers(back)) = Frame::decode(&zero) else {
            panic!("a zero capacity is readable");
        };
        assert_eq!(back[0].capacity, None);
    }

    #[test]
    fn lists_over_their_caps_are_cut_when_encoded() {
        let many = Frame::Peers(
            (0..40)
                .map(|i| PeerRecord {
                    id: vec![i; 38],
                    addrs: vec![vec![1; 10]; 9],
                    capacity: None,
                })
                .collect(),
        );
        let Ok(Frame::Peers(back)) = Frame::decode(&many.encode()) else {
            panic!("a cut list still decodes");
        };
        assert_eq!(back.len(), MAX_PEERS);
        assert!(back.iter().all(|p| p.addrs.len() == MAX_ADDRS));
    }
}
