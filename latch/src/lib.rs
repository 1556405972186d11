//! Connection latches (draft-ietf-btns-connection-latching-02, RFC 5660) as
//! a pure state machine. No I/O, no clock.
//!
//! Empty in the foundation slice; the latching issue fills it.
#![forbid(unsafe_code)]
