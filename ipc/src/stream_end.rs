//! The shared shape of the two ends of a pipe-like byte stream (pipes and FIFOs): a
//! newtype owning its `OwnedFd`, with the fd conversions, non-blocking mode, `Read` or
//! `Write`, and the conversion into a channel half.

/// Defines the impls of one end. `$ty` is a tuple struct around an `OwnedFd`;
/// `reader` ends get `Read` and `into_receiver`/`into_bytes_receiver`, `writer` ends
/// `Write` and `into_sender`/`into_bytes_sender`.
macro_rules! stream_end {
    (common $ty:ident, $what:literal) => {
        impl $ty {
            /// Switches `O_NONBLOCK` on or off. A non-blocking end returns
            /// [`std::io::ErrorKind::WouldBlock`] instead of waiting.
            pub fn set_nonblocking(&self, on: bool) -> $crate::Result<()> {
                $crate::sys::set_nonblocking(&self.0, on)
                    .map_err(|e| $crate::Error::os("fcntl(O_NONBLOCK)", e))
            }

            /// Whether `O_NONBLOCK` is set.
            pub fn is_nonblocking(&self) -> $crate::Result<bool> {
                $crate::sys::is_nonblocking(&self.0)
                    .map_err(|e| $crate::Error::os("fcntl(F_GETFL)", e))
            }
        }

        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                std::os::fd::AsFd::as_fd(&self.0)
            }
        }

        impl std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(&self.0)
            }
        }

        impl From<std::os::fd::OwnedFd> for $ty {
            /// Adopts an fd, for example one a parent passed to a spawned child.
            fn from(fd: std::os::fd::OwnedFd) -> Self {
                $ty(fd)
            }
        }

        impl From<$ty> for std::os::fd::OwnedFd {
            fn from(end: $ty) -> std::os::fd::OwnedFd {
                end.0
            }
        }

        impl std::os::fd::IntoRawFd for $ty {
            fn into_raw_fd(self) -> std::os::fd::RawFd {
                std::os::fd::IntoRawFd::into_raw_fd(self.0)
            }
        }

        impl std::os::fd::FromRawFd for $ty {
            #[doc = concat!("# Safety\n`fd` must be an open ", $what, " end that nothing else owns.")]
            unsafe fn from_raw_fd(fd: std::os::fd::RawFd) -> Self {
                // SAFETY: the caller guarantees `fd` is open and owned by nobody else.
                $ty(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
            }
        }
    };
    (reader $ty:ident, $what:literal, $typed:ident, $bytes:ident) => {
        $crate::stream_end::stream_end!(common $ty, $what);

        impl $ty {
            /// Wraps this end in a typed receiver (switches it to blocking mode; the
            /// receiver's calls still block or time out as asked).
            pub fn into_receiver<T: serde::de::DeserializeOwned>(self) -> $crate::Result<$typed<T>> {
                Ok($crate::channel::Receiver::new($crate::channel::StreamSource::new(self)?))
            }

            /// Wraps this end in a raw-bytes receiver (switches it to blocking mode; the
            /// receiver's calls still block or time out as asked).
            pub fn into_bytes_receiver(self) -> $crate::Result<$bytes> {
                Ok($crate::channel::BytesReceiver::new($crate::channel::StreamSource::new(self)?))
            }
        }

        impl std::io::Read for $ty {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                $crate::sys::read(&self.0, buf).map_err(std::io::Error::from)
            }
        }
    };
    (writer $ty:ident, $what:literal, $typed:ident, $bytes:ident) => {
        $crate::stream_end::stream_end!(common $ty, $what);

        impl $ty {
            /// Wraps this end in a typed sender (switches it to blocking mode; the
            /// sender's calls still block or time out as asked).
            pub fn into_sender<T: serde::Serialize>(self) -> $crate::Result<$typed<T>> {
                Ok($crate::channel::Sender::new($crate::channel::StreamSink::new(self)?))
            }

            /// Wraps this end in a raw-bytes sender (switches it to blocking mode; the
            /// sender's calls still block or time out as asked).
            pub fn into_bytes_sender(self) -> $crate::Result<$bytes> {
                Ok($crate::channel::BytesSender::new($crate::channel::StreamSink::new(self)?))
            }
        }

        impl std::io::Write for $ty {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                $crate::sys::write(&self.0, buf).map_err(std::io::Error::from)
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
    };
}

pub(crate) use stream_end;
