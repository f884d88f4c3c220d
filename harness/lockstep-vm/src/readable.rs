//! Waiting for a file descriptor to become readable (`poll`), on both sides: the agent's control
//! port ([`crate::outbox::HostLines::ready`]) and the host's control-socket listener.

use std::os::fd::AsFd;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Whether `fd` is readable (data, or a connection on a listener) within `timeout`
/// (`PollTimeout::ZERO`: now). Errors are `poll`'s (`EINTR` when a signal came first).
pub(crate) fn readable_within(fd: &impl AsFd, timeout: PollTimeout) -> nix::Result<bool> {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    Ok(poll(&mut fds, timeout)? > 0 && fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLIN)))
}
