//! IKE messages leave without waiting for the socket ([`send_or_queue`]),
//! so that the driver can answer each request of a receive burst as soon
//! as it is handled; what the socket refuses waits, in order, for the run
//! loop's `flush`, which waits until the socket is writable.

use std::collections::VecDeque;
use std::io;

/// Send `msg` now with `try_send`, unless messages are already waiting in
/// `backlog` (then it waits behind them: IKE messages of one SA leave in
/// the order `ike` made them) or the socket would block (then it is the
/// first to wait). `Err`: the send failed for another reason and the
/// message is dropped (IKE's retransmission covers it).
pub(super) fn send_or_queue<T>(
    backlog: &mut VecDeque<T>,
    msg: T,
    try_send: impl FnOnce(&T) -> io::Result<usize>,
) -> io::Result<()> {
    if !backlog.is_empty() {
        backlog.push_back(msg);
        return Ok(());
    }
    match try_send(&msg) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            backlog.push_back(msg);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn would_block() -> io::Error {
        io::Error::from(io::ErrorKind::WouldBlock)
    }

    #[test]
    fn refused_messages_wait_in_order_and_nothing_overtakes_them() {
        let mut backlog = VecDeque::new();
        let mut sent = Vec::new();
        // The socket takes the first message.
        send_or_queue(&mut backlog, 1, |m| {
            sent.push(*m);
            Ok(1)
        })
        .unwrap();
        // It refuses the second: that one waits.
        send_or_queue(&mut backlog, 2, |_| Err(would_block())).unwrap();
        // The third is not even tried while the second waits, though the
        // socket would take it now.
        send_or_queue(&mut backlog, 3, |m| {
            sent.push(*m);
            Ok(1)
        })
        .unwrap();
        assert_eq!(sent, [1]);
        assert_eq!(backlog.iter().copied().collect::<Vec<_>>(), [2, 3]);
        // Once the backlog is sent, messages leave at once again.
        backlog.clear();
        send_or_queue(&mut backlog, 4, |m| {
            sent.push(*m);
            Ok(1)
        })
        .unwrap();
        assert_eq!(sent, [1, 4]);
        assert!(backlog.is_empty());
    }

    #[test]
    fn other_send_errors_are_reported_and_the_message_dropped() {
        let mut backlog = VecDeque::new();
        let r = send_or_queue(&mut backlog, 1, |_| {
            Err(io::Error::from(io::ErrorKind::HostUnreachable))
        });
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::HostUnreachable);
        assert!(backlog.is_empty());
    }
}
