//! Capacity adverts on gossipsub: publishing this node's, and checking and recording
//! peers' (signature, sender, per-source rate) in the peer book.

use super::*;

use kith_protocol::capacity::AdvertError;
use libp2p::gossipsub::MessageAcceptance;

impl Task {
    /// Publishes this node's advert: identity, the next sequence number, the time and
    /// the coordinate filled in, signed by the node key.
    pub(super) fn publish_advert(&mut self, mut advert: Advert) {
        self.seq += 1;
        advert.peer = match self.key.public().try_into_ed25519() {
            Ok(k) => k.to_bytes(),
            Err(_) => return,
        };
        advert.seq = self.seq;
        advert.issued_ms = now_ms();
        advert.coord = self.coord;
        let key = self.key.clone();
        let bytes = advert.encode(|m| {
            let sig = key.sign(m).unwrap_or_default();
            sig.try_into().unwrap_or([0; 64])
        });
        self.table().local = Some(advert);
        if let Err(e) = self.publish(Proto::Adverts, self.topic.clone(), bytes) {
            tracing::debug!(error = ?e, "advert not published (no peers yet?)");
        }
    }

    /// A peer's advert from gossipsub: rate-limited per source, verified (signature,
    /// and signed by the key of the peer that published it), recorded in the peer book.
    /// Returns whether gossip may forward it.
    pub(super) fn advert(
        &mut self,
        from: PeerId,
        message: gossipsub::Message,
    ) -> MessageAcceptance {
        let Some(source) = message.source else {
            return MessageAcceptance::Reject;
        };
        let now = now_ms();
        let bucket = self.advert_buckets.entry(source).or_insert_with(|| {
            TokenBucket::new(self.config.advert_rate_per_peer, ADVERT_BURST, now)
        });
        if !bucket.try_take(now) {
            tracing::debug!(peer = %source, "advert rate limit: dropped");
            return MessageAcceptance::Ignore;
        }
        match Advert::decode(&message.data, now) {
            Ok(advert) => {
                let key_peer = libp2p::identity::ed25519::PublicKey::try_from_bytes(&advert.peer)
                    .map(|k| PeerId::from_public_key(&libp2p::identity::PublicKey::from(k)));
                if key_peer.ok() != Some(source) {
                    tracing::warn!(%source, "advert signed by another key than its sender; dropped");
                    self.penalise(from);
                    return MessageAcceptance::Reject;
                }
                self.table().advert(source, advert);
                self.dial_heard_of(source);
                MessageAcceptance::Accept
            }
            // Late (relayed slowly) or early (a clock off): not worth passing on, but
            // no sign of a lie.
            Err(e @ AdvertError::Stale { .. }) => {
                tracing::debug!(%source, error = %e, "advert dropped");
                MessageAcceptance::Ignore
            }
            Err(e) => {
                tracing::debug!(%source, error = %e, "advert dropped");
                MessageAcceptance::Reject
            }
        }
    }
}
