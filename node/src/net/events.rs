//! Swarm events: connections, listeners, and each behaviour's events, dispatched to
//! the module that handles them.

use super::*;

use libp2p::gossipsub::MessageAcceptance;

impl Task {
    pub(super) fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr {
                address,
                listener_id,
            } => {
                if let Some((_, waiting, _)) = &mut self.discovery.bootstrap {
                    waiting.remove(&listener_id);
                }
                self.dial_bootstrap(false);
                let table = self.table();
                if is_relayed(&address) {
                    tracing::info!(%address, "reachable through a relay");
                    table.nat.relayed_addresses.push(address.to_string());
                } else {
                    tracing::info!(%address, "listening");
                }
                table.listen_addrs.push(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => self.forget_listen_addr(&address),
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                for address in &addresses {
                    self.forget_listen_addr(address);
                }
                if let Some(relay) = self.nat.auto_relays.remove(&listener_id) {
                    tracing::info!(%relay, ?reason, "relay reservation ended");
                }
                for pinned in &mut self.nat.pinned_relays {
                    if pinned.listener == Some(listener_id) {
                        tracing::warn!(relay = %pinned.circuit, ?reason, "reservation on a configured relay ended; retrying in 30 s");
                        pinned.listener = None;
                        pinned.retry_at = Instant::now() + REDIAL_AFTER;
                    }
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let addr = endpoint.get_remote_address().clone();
                if self.subnet_full(peer_id, &addr) {
                    self.swarm.close_connection(connection_id);
                    return;
                }
                if endpoint.is_relayed() {
                    self.nat
                        .relayed
                        .entry(peer_id)
                        .or_default()
                        .push(connection_id);
                    self.count_relayed();
                } else {
                    if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                        self.discovery
                            .dialled_addrs
                            .insert(peer_id, address.clone());
                    }
                    self.nat
                        .direct
                        .entry(peer_id)
                        .or_insert((0, Instant::now()))
                        .0 += 1;
                    if self.nat.reversals.remove(&connection_id).is_some() {
                        tracing::info!(peer = %peer_id, "dialled back a peer that came through a relay: direct connection");
                        self.table().nat.direct_upgrades += 1;
                    }
                    self.drop_relayed(peer_id);
                }
                self.table().on_connected(peer_id, addr);
                if num_established.get() == 1 {
                    // Every peer met is a candidate neighbour.
                    self.hood.machine.discovered(now_ms(), peer_id);
                    let _ = self
                        .inbound
                        .try_send(Inbound::Alias(AliasInbound::Connected(peer_id)));
                    let _ = self
                        .inbound
                        .try_send(Inbound::State(StateInbound::Connected(peer_id)));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                if let Some(ids) = self.nat.relayed.get_mut(&peer_id) {
                    ids.retain(|c| *c != connection_id);
                    if ids.is_empty() {
                        self.nat.relayed.remove(&peer_id);
                    }
                    self.count_relayed();
                }
                if !endpoint.is_relayed()
                    && let Some((n, _)) = self.nat.direct.get_mut(&peer_id)
                {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.nat.direct.remove(&peer_id);
                    }
                }
                if num_established == 0 {
                    self.nat.relay_candidates.remove(&peer_id);
                    self.discovery.dialled_addrs.remove(&peer_id);
                    self.table().on_disconnected(&peer_id);
                    // A peer that comes back starts with a full bucket (a burst of
                    // HOOD_BURST messages costs it a handshake): its first messages
                    // after a restart must not be dropped for what it sent before.
                    self.advert_buckets.remove(&peer_id);
                    if self.hood.machine.involves(peer_id) {
                        self.hood.machine.unreachable(now_ms(), peer_id);
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                connection_id,
                error,
            } => {
                if self.nat.reversals.remove(&connection_id).is_some() {
                    tracing::debug!(%peer, %error, "cannot dial back a peer that came through a relay");
                    return;
                }
                // A peer heard of whose addresses we lack: look them up.
                if self.discovery.dialled.contains_key(&peer)
                    && matches!(error, libp2p::swarm::DialError::NoAddresses)
                {
                    self.look_up(peer);
                } else {
                    tracing::debug!(%peer, %error, "dial failed");
                    if !self.swarm.is_connected(&peer) && self.hood.machine.involves(peer) {
                        self.hood.machine.unreachable(now_ms(), peer);
                    }
                }
            }
            SwarmEvent::Behaviour(event) => self.behaviour(event),
            _ => {}
        }
    }

    pub(super) fn behaviour(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(
                identify::Event::Received { peer_id, info, .. }
                | identify::Event::Pushed { peer_id, info, .. },
            ) => {
                if info.protocols.contains(&relay::HOP_PROTOCOL_NAME) {
                    self.relay_candidate(peer_id, &info.listen_addrs);
                }
                self.dial_back(peer_id, &info.listen_addrs);
                // A peer's loopback addresses are only any use if it is on this host.
                let local = self
                    .table
                    .book
                    .get(&peer_id)
                    .and_then(|i| i.extra.as_ref())
                    .is_some_and(is_loopback);
                let shareable: Vec<Multiaddr> = info
                    .listen_addrs
                    .iter()
                    .filter(|a| local || !is_loopback(a))
                    .cloned()
                    .collect();
                self.hood.remember(peer_id, shareable);
                for addr in info.listen_addrs {
                    if local || !is_loopback(&addr) {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
            }
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { old, new }) => {
                tracing::info!(?old, ?new, "reachability (AutoNAT)");
                self.nat.nat_private = matches!(new, autonat::NatStatus::Private);
                {
                    let table = self.table();
                    table.nat.status = match &new {
                        autonat::NatStatus::Public(_) => "public",
                        autonat::NatStatus::Private => "private",
                        autonat::NatStatus::Unknown => "unknown",
                    };
                    table.nat.public_address = match &new {
                        autonat::NatStatus::Public(a) => Some(a.to_string()),
                        _ => None,
                    };
                }
                self.maintain_relays();
            }
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal: false,
                ..
            }) => {
                tracing::info!(relay = %relay_peer_id, "relay accepted our reservation");
            }
            BehaviourEvent::RelayServer(relay::Event::ReservationReqAccepted {
                src_peer_id,
                renewed: false,
            }) => {
                tracing::info!(peer = %src_peer_id, "relaying for a peer");
            }
            BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => self.hole_punched(remote_peer_id, result),
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetClosestPeers(result),
                ..
            }) => self.looked_up(id, result),
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                let rtt_ms = rtt.as_secs_f64() * 1000.0;
                let remote = self.table().observe_rtt(&peer, rtt_ms);
                // The neighbourhood ranks peers by the smoothed RTT, so one slow ping
                // does not move links.
                if let Some(smoothed) = self.table.rtt_ms(&peer) {
                    self.hood.machine.rtt(now_ms(), peer, smoothed);
                }
                if let Some(remote) = remote {
                    let fallback = fallback_direction(self.swarm.local_peer_id(), &peer);
                    self.coord.observe(
                        &remote,
                        rtt_ms.max(0.01),
                        fallback,
                        &vivaldi::Config::default(),
                    );
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    self.hood.machine.discovered(now_ms(), peer);
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    if !self.swarm.is_connected(&peer) {
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                // Gossip forwards a message only once it is checked here
                // (`validate_messages`): a forged or malformed one goes no further.
                let acceptance = self.gossip(propagation_source, message);
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetProviders(result),
                step,
                ..
            }) => self.providers_found(id, &result, step.last),
            BehaviourEvent::Hood(event) => self.hood_event(event),
            BehaviourEvent::Fetch(event) => self.fetch_event(event),
            BehaviourEvent::Invoke(event) => self.invoke_event(event),
            BehaviourEvent::Aliases(event) => self.aliases_event(event),
            BehaviourEvent::State(event) => self.state_event(event),
            _ => {}
        }
    }

    /// Checks a gossip message and hands it on: alias records to the node. Returns
    /// whether gossip may forward it.
    fn gossip(&mut self, from: PeerId, message: gossipsub::Message) -> MessageAcceptance {
        let valid = |ok: bool| {
            if ok {
                MessageAcceptance::Accept
            } else {
                MessageAcceptance::Reject
            }
        };
        if message.topic == self.alias_topic.hash() {
            self.bytes.received(Proto::AliasRecords, message.data.len());
            // Decoding verifies the record's signature; the node merges it (and
            // penalises a forger) as before.
            let acceptance = valid(
                if message.data.first() == Some(&kith_protocol::grant::TAG) {
                    kith_protocol::grant::SignedGrants::decode(&message.data).is_ok()
                } else {
                    alias::Signed::decode(&message.data).is_ok()
                },
            );
            let _ = self.inbound.try_send(Inbound::Alias(AliasInbound::Record {
                peer: from,
                bytes: message.data,
            }));
            acceptance
        } else {
            MessageAcceptance::Ignore
        }
    }
}

/// A deterministic direction to push two coinciding coordinates apart.
fn fallback_direction(a: &PeerId, b: &PeerId) -> [f32; 3] {
    let mut h = blake3::Hasher::new();
    h.update(&a.to_bytes());
    h.update(&b.to_bytes());
    let d = h.finalize();
    let d = d.as_bytes();
    std::array::from_fn(|i| f32::from(d[i]) / 255.0 - 0.5)
}
