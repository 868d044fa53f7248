//! Error kinds: the one list of what can go wrong, shared by the call path, the wire,
//! state sync, the HTTP API and the metrics.
//!
//! Each kind has a **wire code** (the snake_case name peers send and the HTTP API
//! reports), an **HTTP status**, and a **disposition**: what a call attempt does when
//! a candidate answers with it. A code a peer sends that this version does not know
//! becomes [`ErrorKind::RemoteError`], so a map keyed by kind (a metric label, a
//! counter) is bounded by construction whatever peers send.

/// What a call attempt does when a candidate answers with an error of this kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// The candidate did not run the call and said why honestly (busy, lacks the
    /// function, caps too small, shutting down): try the next candidate.
    RetryElsewhere,
    /// The candidate misbehaved (did not answer in time, answered with nonsense):
    /// count it against the peer and try the next candidate.
    PenalisePeer,
    /// The call ran, or cannot run anywhere (the function's own error, a limit it hit,
    /// a request problem): the caller gets the error.
    ReturnToCaller,
}

macro_rules! kinds {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $status:literal, $disposition:ident; )*) => {
        /// An error kind. See the module docs and `docs/http-api.md`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ErrorKind {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$variant),*];

            /// The wire code: what peers send and the HTTP API reports.
            pub fn code(self) -> &'static str {
                match self { $(ErrorKind::$variant => $code,)* }
            }

            /// The HTTP status the API answers with.
            pub fn http_status(self) -> u16 {
                match self { $(ErrorKind::$variant => $status,)* }
            }

            /// What a call attempt does when a candidate answers with this kind.
            pub fn disposition(self) -> Disposition {
                match self { $(ErrorKind::$variant => Disposition::$disposition,)* }
            }

            /// The kind of a wire code; a code this version does not know is
            /// [`ErrorKind::RemoteError`].
            pub fn from_code(code: &str) -> Self {
                match code {
                    $($code => ErrorKind::$variant,)*
                    _ => ErrorKind::RemoteError,
                }
            }
        }
    };
}

kinds! {
    /// A `{ref}` that is not a function id or alias.
    BadReference = "bad_reference", 400, PenalisePeer;
    /// A body or message that could not be read. From a peer: we never send one, so
    /// the peer is wrong.
    BadRequest = "bad_request", 400, PenalisePeer;
    /// An alias record whose signature does not verify.
    BadRecord = "bad_record", 400, PenalisePeer;
    /// The request needs the API token.
    Unauthorized = "unauthorized", 401, PenalisePeer;
    /// A web page of another origin made the request.
    CrossOrigin = "cross_origin", 403, PenalisePeer;
    /// A `Host` header naming no address the node serves.
    BadHost = "bad_host", 421, PenalisePeer;
    /// No key for the namespace; a document outside the hosted namespaces.
    Forbidden = "forbidden", 403, PenalisePeer;
    /// A namespace's owner has not granted the function (or the node's keys) the
    /// state access asked for.
    PermissionDenied = "permission_denied", 403, RetryElsewhere;
    /// The node runs only functions its trusted publishers point at.
    Untrusted = "untrusted", 403, RetryElsewhere;
    /// The node does not host the function's state namespace.
    StateNotHosted = "state_not_hosted", 403, RetryElsewhere;
    /// The operation does not fit (a taken name, no earlier record, a type clash).
    Conflict = "conflict", 409, PenalisePeer;
    /// No such function (or route, or document).
    NotFound = "not_found", 404, RetryElsewhere;
    /// A module over `max_module_bytes`.
    ModuleTooLarge = "module_too_large", 413, PenalisePeer;
    /// Input over the function's or the node's limit.
    InputTooLarge = "input_too_large", 413, ReturnToCaller;
    /// A state write over a state limit.
    TooLarge = "too_large", 413, PenalisePeer;
    /// Not a valid kith function (on that node: a peer with smaller caps may refuse a
    /// module another accepts).
    InvalidModule = "invalid_module", 422, RetryElsewhere;
    /// The manifest asks for more than the node gives any call.
    ExceedsNodeCaps = "exceeds_node_caps", 422, RetryElsewhere;
    /// The call used its fuel.
    OutOfFuel = "out_of_fuel", 422, ReturnToCaller;
    /// The guest grew memory past its ceiling.
    MemoryLimit = "memory_limit", 422, ReturnToCaller;
    /// The guest grew a table past its ceiling.
    TableLimit = "table_limit", 422, ReturnToCaller;
    /// Compiling took longer than the node allows.
    CompileTimeout = "compile_timeout", 422, RetryElsewhere;
    /// Output over `max_output_bytes`.
    OutputTooLarge = "output_too_large", 422, ReturnToCaller;
    /// The guest's stack overflowed.
    StackOverflow = "stack_overflow", 422, ReturnToCaller;
    /// The guest trapped.
    Trap = "trap", 422, ReturnToCaller;
    /// The function returned an error.
    FunctionError = "function_error", 422, ReturnToCaller;
    /// Every slot and queue place is taken, the CPU share is spent, the node is off
    /// hours, or the compile queue is full.
    Busy = "busy", 429, RetryElsewhere;
    /// The peer refused for exceeding its per-peer rate.
    RateLimited = "rate_limited", 429, RetryElsewhere;
    /// Stored bytes failed verification and were deleted.
    Corrupt = "corrupt", 500, RetryElsewhere;
    /// A failure on the node, not in the function.
    Internal = "internal", 500, ReturnToCaller;
    /// A peer said something this version does not understand (an unknown code).
    RemoteError = "remote_error", 502, PenalisePeer;
    /// The peer could not be reached or did not answer in time.
    Unreachable = "unreachable", 502, PenalisePeer;
    /// A peer's answer came with a receipt that does not check out (forged, for
    /// another call, another output, impossible fuel).
    BadReceipt = "bad_receipt", 502, PenalisePeer;
    /// A verified call (`verify = N`) found no answer a strict majority agrees on.
    NoQuorum = "no_quorum", 502, ReturnToCaller;
    /// `verify` was asked for a function whose result depends on the moment or on
    /// state (it imports the clock or state functions).
    NotDeterministic = "not_deterministic", 422, ReturnToCaller;
    /// The node is shutting down and takes no new calls.
    ShuttingDown = "shutting_down", 503, RetryElsewhere;
    /// The call ran past its `timeout_ms`.
    Timeout = "timeout", 504, ReturnToCaller;
    /// The module alone is larger than the store budget.
    StoreFull = "store_full", 507, RetryElsewhere;
}

impl ErrorKind {
    /// True for a fault of the function itself that any honest peer running the same
    /// call answers alike, so a caller can check a peer that claims one by running the
    /// call elsewhere (`crate::attempt`): a trap. Not the faults that depend on the
    /// machine or the moment (`timeout` is wall time, `stack_overflow` and
    /// `out_of_fuel` can differ by backend, `function_error` can depend on how fresh a
    /// peer's state is): a slower honest peer must not be "refuted" by a faster one.
    pub fn is_guest_fault(self) -> bool {
        self == Self::Trap
    }

    /// True when a call attempt goes on to the next candidate.
    pub fn retry_elsewhere(self) -> bool {
        self.disposition() != Disposition::ReturnToCaller
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl serde::Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_code(k.code()), *k);
            assert!(seen.insert(k.code()), "{k} twice");
            assert!(
                k.code()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
            assert!((400..600).contains(&k.http_status()));
        }
    }

    #[test]
    fn unknown_codes_are_one_kind() {
        assert_eq!(
            ErrorKind::from_code("i am a very long made up code"),
            ErrorKind::RemoteError
        );
        assert_eq!(ErrorKind::from_code(""), ErrorKind::RemoteError);
    }
}
